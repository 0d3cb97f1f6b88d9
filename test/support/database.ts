// Each test file gets a database of its own, cloned from a migrated template, never one shared
// and mutated by others. PGlite: the template is a dumped data dir (initdb runs once, not per file).
// PostgreSQL (TEST_DATABASE_URL): CREATE DATABASE ... TEMPLATE, which copies files instead of
// replaying migrations.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openPglite, openPostgres, pgliteOf, type Db } from '../../src/platform/db.ts';
import { loadMigrations, migrate } from '../../src/platform/migrate.ts';

export type Engine = 'pglite' | 'postgres';

export const postgresUrl = process.env.TEST_DATABASE_URL?.trim() || undefined;

/**
 * Which engines a test file runs on, chosen by risk, and said at the top of every file
 * (docs/TESTING.md has the matrix and the reason for each group):
 *
 * - 'parity': what differs between the engines, or where a difference would cost money: the
 *   database contract, migrations, the queue, the event stream, idempotency, orders, payments, the
 *   ledger, audit and concurrency. PGlite always, and PostgreSQL too when TEST_DATABASE_URL is set.
 * - 'one': everything else (HTTP rules, accounts, catalog, messaging, operations pages, the
 *   browser): one engine is enough, since what they add above the database is engine-blind. The
 *   faster one: PostgreSQL when TEST_DATABASE_URL is set (a server on the other core, real
 *   concurrency), PGlite otherwise.
 *
 * TEST_ENGINES=all runs every file on both (a release check of the matrix itself);
 * TEST_ENGINES=postgres (with TEST_DATABASE_URL) runs PostgreSQL alone: mutation testing's choice
 * (scripts/mutate.ts), where a run per mutant is cheaper on the server than in the WASM database.
 */
export type EngineMatrix = 'parity' | 'one';

export function engines(matrix: EngineMatrix): Engine[] {
  if (!postgresUrl) return ['pglite'];
  const only = process.env.TEST_ENGINES;
  if (only === 'postgres') return ['postgres'];
  if (only === 'pglite') return ['pglite'];
  if (matrix === 'parity' || only === 'all') return ['pglite', 'postgres'];
  return ['postgres'];
}

async function migrationsHash(): Promise<string> {
  const hash = createHash('sha256');
  for (const m of await loadMigrations()) hash.update(m.name).update(m.sql);
  return hash.digest('hex').slice(0, 12);
}

/** A migrated, empty embedded database, as a dump (built once per set of migrations, kept in the temp directory). */
export async function pgliteTemplate(): Promise<Blob> {
  const dir = join(tmpdir(), 'engine-room-test');
  const file = join(dir, `template-${await migrationsHash()}.tar`);
  try {
    return new Blob([await readFile(file)]);
  } catch {
    const db = await openPglite({});
    await migrate(db);
    const dump = await pgliteOf(db)!.dumpDataDir('none');
    await db.close();
    await mkdir(dir, { recursive: true });
    // Several test processes may build it at once: write aside, then rename, so no one reads half a file.
    const partial = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
    await writeFile(partial, Buffer.from(await dump.arrayBuffer()));
    await rename(partial, file);
    return dump;
  }
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = '/' + database;
  return u.toString();
}

async function postgresTemplate(admin: pg.Client): Promise<string> {
  const name = `er_template_${await migrationsHash()}`;
  await admin.query('SELECT pg_advisory_lock(7, 3)');
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (!rowCount) {
      await admin.query(`CREATE DATABASE ${name}`);
      const db = openPostgres(withDatabase(postgresUrl!, name), 2);
      try {
        await migrate(db);
      } catch (err) {
        await db.close();
        await admin.query(`DROP DATABASE ${name}`);
        throw err;
      }
      await db.close();
    }
  } finally {
    await admin.query('SELECT pg_advisory_unlock(7, 3)');
  }
  return name;
}

export interface TestDatabase {
  db: Db;
  engine: Engine;
  url?: string;
  drop(): Promise<void>;
}

export async function freshDatabase(engine: Engine, poolSize = 20): Promise<TestDatabase> {
  if (engine === 'pglite') {
    const db = await openPglite({ loadDataDir: await pgliteTemplate() });
    return { db, engine, drop: () => db.close() };
  }
  const admin = new pg.Client({ connectionString: postgresUrl });
  await admin.connect();
  try {
    const template = await postgresTemplate(admin);
    const name = `er_test_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
    const url = withDatabase(postgresUrl!, name);
    const db = openPostgres(url, poolSize);
    return {
      db,
      engine,
      url,
      drop: async () => {
        // A test may have closed the pool already (to free its connections): a second close
        // throws, and must not keep the database from being dropped.
        await db.close().catch(() => {});
        const c = new pg.Client({ connectionString: postgresUrl });
        await c.connect();
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await c.end();
      },
    };
  } finally {
    await admin.end();
  }
}
