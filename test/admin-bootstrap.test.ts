// The first start on an empty database creates the admin account, once, even when several
// processes start at the same moment against one PostgreSQL.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { createClient, endpoints, type Client } from '../src/client.ts';
import { openPostgres, type Db } from '../src/platform/db.ts';
import { ensureAdmin } from '../src/modules/accounts/service.ts';
import { engines, freshDatabase, type TestDatabase } from './support/database.ts';
import { injectTransport } from './support/app.ts';
import { unthrottled } from './support/unthrottled.ts';
import type { FastifyInstance } from 'fastify';

async function users(db: Db): Promise<{ email: string; role: string; password_hash: string }[]> {
  return db.query('SELECT email, role, password_hash FROM users ORDER BY id');
}

for (const engine of engines('one')) {
  describe(`the first admin [${engine}]`, () => {
    let database: TestDatabase;
    let app: FastifyInstance;
    let client: Client;
    let generated: { email: string; generatedPassword: string | null } | null;

    before(async () => {
      database = await freshDatabase(engine);
      app = await buildApp(loadConfig({ LOG_LEVEL: 'silent', SECURE_COOKIES: 'false', ...unthrottled }), database.db);
      client = createClient(injectTransport(app));
    });
    after(async () => {
      await app?.close();
      await database?.drop();
    });

    it('is created on an empty database with a generated password that works for login', async () => {
      assert.deepEqual(await users(database.db), [], 'the database starts empty');
      generated = await ensureAdmin(database.db, { email: undefined, password: undefined });
      assert.ok(generated?.generatedPassword, 'a generated password is answered, to be printed once');
      assert.ok(generated.generatedPassword.length >= 16, 'the generated password is long');
      const [admin, ...others] = await users(database.db);
      assert.equal(others.length, 0);
      assert.equal(admin!.email, generated.email);
      assert.equal(admin!.role, 'admin');
      assert.match(admin!.password_hash, /^\$argon2id\$/);
      assert.ok(!admin!.password_hash.includes(generated.generatedPassword));
      const login = await client.ok(endpoints.login, {
        body: { email: generated.email, password: generated.generatedPassword },
      });
      assert.equal(login.user.role, 'admin');
      const keys = await client.call(endpoints.listApiKeys, { token: login.token });
      assert.equal(keys.status, 200, 'the admin can use admin-only endpoints');
    });

    it('is not created again: a second call answers null and creates nothing', async () => {
      assert.equal(await ensureAdmin(database.db, { email: undefined, password: undefined }), null);
      assert.equal(
        await ensureAdmin(database.db, { email: 'second@example.com', password: 'another admin password' }),
        null,
      );
      const all = await users(database.db);
      assert.deepEqual(
        all.map((u) => u.email),
        [generated!.email],
      );
      // The first password still works: nothing was reset either.
      assert.equal(
        (
          await client.call(endpoints.login, {
            body: { email: generated!.email, password: generated!.generatedPassword! },
          })
        ).status,
        200,
      );
    });

    it('is not created when the database has users, even if none is an admin', async () => {
      const other = await freshDatabase(engine);
      try {
        await other.db.query(
          "INSERT INTO users (id, email, name, role, password_hash) VALUES ('usr_00000000000000000000000001', 'c@example.com', 'C', 'customer', 'x')",
        );
        assert.equal(await ensureAdmin(other.db, { email: undefined, password: undefined }), null);
        assert.equal((await users(other.db)).length, 1);
      } finally {
        await other.drop();
      }
    });
  });

  describe(`the first admin from ADMIN_EMAIL and ADMIN_PASSWORD [${engine}]`, () => {
    it('uses the given email and password, and answers no generated password', async () => {
      const database = await freshDatabase(engine);
      const app = await buildApp(loadConfig({ LOG_LEVEL: 'silent', ...unthrottled }), database.db);
      try {
        const created = await ensureAdmin(database.db, {
          email: 'Ops@Shop.example',
          password: 'the given admin password',
        });
        assert.deepEqual(created, { email: 'Ops@Shop.example', generatedPassword: null });
        const client = createClient(injectTransport(app));
        const login = await client.ok(endpoints.login, {
          body: { email: 'ops@shop.example', password: 'the given admin password' },
        });
        assert.equal(login.user.role, 'admin');
        assert.equal(
          (await client.call(endpoints.login, { body: { email: 'ops@shop.example', password: 'some other password' } }))
            .status,
          401,
        );
      } finally {
        await app.close();
        await database.drop();
      }
    });
  });

  describe(`concurrent first starts [${engine}]`, () => {
    it('create exactly one admin', async () => {
      const database = await freshDatabase(engine);
      // On PostgreSQL each "process" gets a pool of its own, as separate processes would.
      const extra: Db[] = engine === 'postgres' ? [1, 2, 3].map(() => openPostgres(database.url!, 2)) : [];
      try {
        const dbs = [database.db, ...extra];
        const results = await Promise.all(
          [0, 1, 2, 3].map((i) => ensureAdmin(dbs[i % dbs.length]!, { email: undefined, password: undefined })),
        );
        const created = results.filter((r) => r !== null);
        assert.equal(created.length, 1, `${created.length} of ${results.length} calls say they created the admin`);
        const all = await users(database.db);
        assert.equal(all.length, 1);
        assert.equal(all[0]!.role, 'admin');
      } finally {
        await Promise.all(extra.map((db) => db.close()));
        await database.drop();
      }
    });
  });
}
