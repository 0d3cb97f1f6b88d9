import { it } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine, adminEmail, type TestEnv } from './support/app.ts';
import { endpoints, ApiError } from '../src/client.ts';
import { csrfTokenFor } from '../src/platform/auth.ts';

const password = 'correct horse battery staple';

forEachEngine('signup, login, logout and me', 'one', (env) => {
  it('signs up a customer and answers user, token and expiry; me shows the same user', async () => {
    const { client } = env();
    const res = await client.call(endpoints.signup, { body: { email: 'Ada@Example.com', password, name: 'Ada' } });
    assert.equal(res.status, 201);
    assert.ok(res.ok);
    assert.match(res.body.user.id, /^usr_[0-9a-z]{26}$/);
    assert.equal(res.body.user.role, 'customer');
    assert.ok(Date.parse(res.body.expiresAt) > Date.now());
    assert.equal(JSON.stringify(res.body).includes('password'), false);
    const me = await client.ok(endpoints.me, { token: res.body.token });
    assert.deepEqual(me, res.body.user);
  });

  it('refuses an email that differs only in case with 409 email_taken', async () => {
    const res = await env().client.call(endpoints.signup, {
      body: { email: 'ADA@example.COM', password, name: 'Other Ada' },
    });
    assert.equal(res.status, 409);
    assert.equal(res.body.code, 'email_taken');
  });

  it('refuses a password that is too short, too long, or too common', async () => {
    const { client } = env();
    for (const bad of ['short12', 'x'.repeat(257), 'Password123', 'qwertyuiop']) {
      const res = await client.call(endpoints.signup, {
        body: { email: `p${bad.length}${bad[0]}@example.com`, password: bad, name: 'P' },
      });
      assert.equal(res.status, 400, bad);
      assert.equal(res.body.code, 'validation_failed');
      assert.equal((res.body as { errors?: { path: string }[] }).errors?.[0]?.path, '/password');
    }
  });

  it('trims the name, and refuses a name with nothing visible in it with 400 naming /name', async () => {
    const { client } = env();
    const trimmed = await client.ok(endpoints.signup, {
      body: { email: 'trimmed@example.com', password, name: '  Ada Byron \t' },
    });
    assert.equal(trimmed.user.name, 'Ada Byron');
    for (const blank of [' ', '     ', '\t\n', '\u00a0\u3000', '\u200b\u200b']) {
      const res = await client.call(endpoints.signup, {
        body: { email: `blank${blank.length}${blank.charCodeAt(0)}@example.com`, password, name: blank },
      });
      assert.equal(res.status, 400, JSON.stringify(blank));
      assert.equal(res.body.code, 'validation_failed');
      assert.deepEqual((res.body as { errors?: unknown[] }).errors, [
        { path: '/name', message: 'must not be empty or only white space' },
      ]);
      assert.match((res.body as { detail: string }).detail, /name must not be empty or only white space/);
    }
    const [row] = await env().database.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM users WHERE email LIKE 'blank%'",
    );
    assert.equal(row!.n, 0, 'no account was made');
  });

  it('refuses a password of only white space, and says which passwords are refused', async () => {
    const { client } = env();
    for (const blank of [' '.repeat(8), '\t'.repeat(12), '\u00a0'.repeat(9)]) {
      const res = await client.call(endpoints.signup, {
        body: { email: `spaces${blank.length}@example.com`, password: blank, name: 'Spacey' },
      });
      assert.equal(res.status, 400, JSON.stringify(blank));
      assert.equal(res.body.code, 'validation_failed');
      assert.deepEqual((res.body as { errors?: unknown[] }).errors, [
        { path: '/password', message: 'must not be only white space' },
      ]);
      assert.match(
        (res.body as { detail: string }).detail,
        /^The password must not be only white space: Passwords are 8 to 256 characters, not only white space .*most common passwords\.$/,
      );
    }
    // A password with spaces in it is fine, and so is one that starts or ends with a space.
    assert.equal(
      (
        await client.call(endpoints.signup, {
          body: { email: 'spaced@example.com', password: '  spaced out pass  ', name: 'Spaced' },
        })
      ).status,
      201,
    );
    const doc = JSON.parse((await env().app.inject({ method: 'GET', url: '/openapi.json' })).body);
    const signupBody = doc.paths['/v1/auth/signup'].post.requestBody.content['application/json'].schema;
    assert.match(signupBody.properties.password.description, /not only white space/);
    assert.match(signupBody.properties.name.description, /visible character/);
  });

  it('logs in with any case of the email; a wrong password and an unknown email get the same 401', async () => {
    const { client } = env();
    const ok = await client.call(endpoints.login, { body: { email: 'ada@EXAMPLE.com', password } });
    assert.equal(ok.status, 200);
    const wrong = await client.call(endpoints.login, {
      body: { email: 'ada@example.com', password: 'not the password' },
    });
    const unknown = await client.call(endpoints.login, { body: { email: 'nobody@example.com', password } });
    assert.equal(wrong.status, 401);
    assert.equal(unknown.status, 401);
    assert.deepEqual(wrong.body, unknown.body);
    assert.equal((wrong.body as { code: string }).code, 'invalid_credentials');
  });

  it('refuses a token after logout, and keeps other sessions of the user alive', async () => {
    const { client } = env();
    const a = await client.ok(endpoints.login, { body: { email: 'ada@example.com', password } });
    const b = await client.ok(endpoints.login, { body: { email: 'ada@example.com', password } });
    assert.equal((await client.call(endpoints.logout, { token: a.token })).status, 204);
    const after = await client.call(endpoints.me, { token: a.token });
    assert.equal(after.status, 401);
    assert.equal((after.body as { code: string }).code, 'unauthenticated');
    assert.equal((await client.call(endpoints.me, { token: b.token })).status, 200);
  });

  it('refuses an expired session', async () => {
    const { client, database } = env();
    const s = await client.ok(endpoints.login, { body: { email: 'ada@example.com', password } });
    await database.db.query("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_id = $1", [
      s.user.id,
    ]);
    assert.equal((await client.call(endpoints.me, { token: s.token })).status, 401);
  });

  it('answers 401 without a token, and with a malformed Authorization header', async () => {
    const { app } = env();
    assert.equal((await app.inject({ method: 'GET', url: '/v1/me' })).statusCode, 401);
    const res = await app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: 'Basic abc' } });
    assert.equal(res.statusCode, 401);
    assert.equal(res.json().code, 'unauthenticated');
  });

  it('stores tokens only as hashes and never writes a password or token to the log', async () => {
    const { client, database, logs } = env();
    const s = await client.ok(endpoints.signup, {
      body: { email: 'secretive@example.com', password: 'a very secret passphrase', name: 'S' },
    });
    await client.ok(endpoints.me, { token: s.token });
    const stored = await database.db.query<{ token_hash: Buffer }>('SELECT token_hash FROM sessions');
    assert.ok(stored.every((r) => !r.token_hash.toString('utf8').includes(s.token)));
    const [user] = await database.db.query<{ password_hash: string }>(
      "SELECT password_hash FROM users WHERE email = 'secretive@example.com'",
    );
    assert.match(user!.password_hash, /^\$argon2id\$/);
    const all = logs.join('\n');
    assert.ok(!all.includes('a very secret passphrase'));
    assert.ok(!all.includes(s.token));
  });
});

forEachEngine(
  'browser sessions by cookie',
  'one',
  (env) => {
    it('accepts the HttpOnly SameSite cookie, and demands the CSRF token on unsafe requests', async () => {
      const { app } = env();
      const login = await app.inject({
        method: 'POST',
        url: '/v1/auth/signup',
        payload: { email: 'cookie@example.com', password, name: 'C' },
      });
      const setCookie = String(login.headers['set-cookie']);
      assert.match(setCookie, /er_session=ers_/);
      assert.match(setCookie, /HttpOnly/);
      assert.match(setCookie, /SameSite=Strict/);
      const cookie = setCookie.split(';')[0]!;
      const token = login.json().token as string;
      assert.equal(login.json().csrfToken, csrfTokenFor(token));
      assert.equal((await app.inject({ method: 'GET', url: '/v1/me', headers: { cookie } })).statusCode, 200);
      const forged = await app.inject({ method: 'POST', url: '/v1/auth/logout', headers: { cookie } });
      assert.equal(forged.statusCode, 403);
      assert.equal(forged.json().code, 'forbidden');
      const wrong = await app.inject({
        method: 'POST',
        url: '/v1/auth/logout',
        headers: { cookie, 'x-csrf-token': csrfTokenFor('ers_other') },
      });
      assert.equal(wrong.statusCode, 403);
      const real = await app.inject({
        method: 'POST',
        url: '/v1/auth/logout',
        headers: { cookie, 'x-csrf-token': csrfTokenFor(token) },
      });
      assert.equal(real.statusCode, 204);
      assert.equal((await app.inject({ method: 'GET', url: '/v1/me', headers: { cookie } })).statusCode, 401);
    });
  },
  { SECURE_COOKIES: 'true' },
);

forEachEngine('API keys and roles', 'one', (env) => {
  it('trims the name of a key, and refuses one with nothing visible in it', async () => {
    const { client, adminToken } = env();
    const trimmed = await client.ok(endpoints.createApiKey, {
      token: adminToken,
      body: { name: '  storefront  ', role: 'staff' },
    });
    assert.equal(trimmed.name, 'storefront');
    const blank = await client.call(endpoints.createApiKey, {
      token: adminToken,
      body: { name: '   ', role: 'staff' },
    });
    assert.equal(blank.status, 400);
    assert.deepEqual((blank.body as { errors?: unknown[] }).errors, [
      { path: '/name', message: 'must not be empty or only white space' },
    ]);
  });

  it('lets an admin create a key that is shown once, works at once, and is refused at once after revocation', async () => {
    const { client, adminToken, database } = env();
    const created = await client.call(endpoints.createApiKey, {
      token: adminToken,
      body: { name: 'warehouse', role: 'staff' },
    });
    assert.equal(created.status, 201);
    assert.ok(created.ok);
    assert.match(created.body.id, /^key_/);
    assert.match(created.body.key, /^erk_/);
    const me = await client.ok(endpoints.me, { token: created.body.key });
    assert.deepEqual(
      { id: me.id, role: me.role, email: me.email },
      { id: created.body.id, role: 'staff', email: null },
    );
    const listed = await client.ok(endpoints.listApiKeys, { token: adminToken });
    assert.ok(listed.data.some((k) => k.id === created.body.id));
    assert.ok(!JSON.stringify(listed).includes(created.body.key));
    const [row] = await database.db.query<{ key_hash: Buffer }>('SELECT key_hash FROM api_keys WHERE id = $1', [
      created.body.id,
    ]);
    assert.ok(!row!.key_hash.toString('utf8').includes(created.body.key));
    assert.equal(
      (await client.call(endpoints.revokeApiKey, { token: adminToken, params: { id: created.body.id } })).status,
      204,
    );
    assert.equal((await client.call(endpoints.me, { token: created.body.key })).status, 401);
    assert.equal(
      (await client.call(endpoints.revokeApiKey, { token: adminToken, params: { id: 'key_doesnotexist' } })).status,
      404,
    );
  });

  it('keeps key management and role changes to admins', async () => {
    const { client, customer } = env();
    const c = await customer();
    const res = await client.call(endpoints.createApiKey, { token: c.token, body: { name: 'mine', role: 'admin' } });
    assert.equal(res.status, 403);
    assert.equal((res.body as { code: string }).code, 'forbidden');
    assert.equal(
      (await client.call(endpoints.updateUser, { token: c.token, params: { id: c.id }, body: { role: 'admin' } }))
        .status,
      403,
    );
  });

  it('lets an admin change a role, effective on the next request of that user', async () => {
    const { client, adminToken, customer } = env();
    const c = await customer();
    assert.equal((await client.call(endpoints.listApiKeys, { token: c.token })).status, 403);
    const updated = await client.ok(endpoints.updateUser, {
      token: adminToken,
      params: { id: c.id },
      body: { role: 'admin' },
    });
    assert.equal(updated.role, 'admin');
    assert.equal((await client.call(endpoints.listApiKeys, { token: c.token })).status, 200);
    assert.equal(
      (
        await client.call(endpoints.updateUser, {
          token: adminToken,
          params: { id: 'usr_missing' },
          body: { role: 'staff' },
        })
      ).status,
      404,
    );
    const bad = await client.call(endpoints.updateUser, {
      token: adminToken,
      params: { id: c.id },
      body: { role: 'root' as 'admin' },
    });
    assert.equal(bad.status, 400);
  });

  it('pages API keys newest first with an opaque cursor', async () => {
    const { client, adminToken } = env();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++)
      ids.push(
        (await client.ok(endpoints.createApiKey, { token: adminToken, body: { name: `k${i}`, role: 'customer' } })).id,
      );
    const first = await client.ok(endpoints.listApiKeys, { token: adminToken, query: { limit: 2 } });
    assert.equal(first.data.length, 2);
    assert.ok(first.nextCursor);
    const second = await client.ok(endpoints.listApiKeys, {
      token: adminToken,
      query: { limit: 2, cursor: first.nextCursor! },
    });
    const seen = [...first.data, ...second.data].map((k) => k.id);
    assert.deepEqual(seen, [...seen].sort().reverse());
    assert.equal(new Set(seen).size, 4);
    const badCursor = await client.call(endpoints.listApiKeys, { token: adminToken, query: { cursor: 'garbage' } });
    assert.equal(badCursor.status, 400);
    const badLimit = await client.call(endpoints.listApiKeys, { token: adminToken, query: { limit: 101 } });
    assert.equal(badLimit.status, 400);
  });

  it('rejects an admin key by ApiError through the client helper', async () => {
    const { client } = env();
    await assert.rejects(
      client.ok(endpoints.me, { token: 'erk_nope' }),
      (err: unknown) => err instanceof ApiError && err.status === 401,
    );
    assert.ok(adminEmail);
  });
});

forEachEngine('responses that carry secrets', 'one', (env) => {
  it('are marked Cache-Control: no-store: signup, login, a new API key, a new webhook endpoint', async () => {
    const { client, adminToken } = env();
    const results = {
      signup: await client.call(endpoints.signup, { body: { email: 'nocache@example.com', password, name: 'N' } }),
      login: await client.call(endpoints.login, { body: { email: 'nocache@example.com', password } }),
      apiKey: await client.call(endpoints.createApiKey, {
        token: adminToken,
        body: { name: 'cached?', role: 'staff' },
      }),
      webhook: await client.call(endpoints.createWebhookEndpoint, {
        token: adminToken,
        body: { url: 'https://hooks.example/cache', events: ['order.paid'] },
      }),
    };
    for (const [name, res] of Object.entries(results)) {
      assert.ok(res.status === 200 || res.status === 201, `${name}: ${res.status}`);
      assert.equal(res.headers['cache-control'], 'no-store', name);
    }
    // A failed login says nothing secret, but it is the same route: no cache keeps it either.
    assert.equal(
      (await client.call(endpoints.login, { body: { email: 'nocache@example.com', password: 'wrong password' } }))
        .headers['cache-control'],
      'no-store',
    );
    assert.equal(
      (await client.call(endpoints.me, { token: adminToken })).headers['cache-control'],
      undefined,
      'only where declared',
    );
  });
});

forEachEngine('Idempotency-Key on API key creation and signup', 'one', (env) => {
  it('answers a retried API key creation with the same key, once, and stores neither the key nor the Idempotency-Key in the clear', async () => {
    const { client, adminToken, database } = env();
    const idempotencyKey = 'b6f4a0a2-3c7e-4f5e-9a51-0d9c2f1e8a77';
    const body = { name: 'retried', role: 'staff' as const };
    const first = await client.call(endpoints.createApiKey, { token: adminToken, idempotencyKey, body });
    const retry = await client.call(endpoints.createApiKey, { token: adminToken, idempotencyKey, body });
    assert.equal(first.status, 201);
    assert.equal(retry.status, 201);
    assert.deepEqual(retry.body, first.body);
    assert.equal(retry.headers['idempotent-replayed'], 'true');
    assert.equal(retry.headers['cache-control'], 'no-store');
    const live = await database.db.query("SELECT id FROM api_keys WHERE name = 'retried' AND revoked_at IS NULL");
    assert.equal(live.length, 1, 'one live key');
    const other = await client.call(endpoints.createApiKey, {
      token: adminToken,
      idempotencyKey,
      body: { name: 'retried', role: 'admin' },
    });
    assert.equal(other.status, 422);
    assert.equal(other.body.code, 'idempotency_key_reused');
    // What the database holds is of no use without the Idempotency-Key.
    const stored = await database.db.query<{ row: string }>(
      'SELECT row_to_json(k)::text AS row FROM idempotency_keys k',
    );
    const text = stored.map((r) => r.row).join('\n');
    assert.ok(first.ok && !text.includes(first.body.key.slice(4)), 'the API key is not stored in the clear');
    assert.ok(!text.includes(idempotencyKey), 'nor is the Idempotency-Key');
  });

  it('replays a retried signup as 201 for the same account, with a new session, and refuses another request under the key', async () => {
    const { client } = env();
    const idempotencyKey = '5f0d7c1e-signup';
    const body = { email: 'Retry@Example.com', password, name: 'Retry' };
    const first = await client.call(endpoints.signup, { idempotencyKey, body });
    const retry = await client.call(endpoints.signup, { idempotencyKey, body });
    assert.equal(first.status, 201);
    assert.equal(retry.status, 201, JSON.stringify(retry.body));
    assert.ok(first.ok && retry.ok);
    assert.equal(retry.headers['idempotent-replayed'], 'true');
    assert.deepEqual(retry.body.user, first.body.user);
    // Tokens are never stored, so the retry gets a session of its own; both work.
    assert.notEqual(retry.body.token, first.body.token);
    assert.equal((await client.ok(endpoints.me, { token: retry.body.token })).id, first.body.user.id);
    assert.equal((await client.ok(endpoints.me, { token: first.body.token })).id, first.body.user.id);

    for (const changed of [
      { ...body, name: 'Someone else' },
      { ...body, password: 'another long password' },
    ]) {
      const res = await client.call(endpoints.signup, { idempotencyKey, body: changed });
      assert.equal(res.status, 422, JSON.stringify(changed));
      assert.equal(res.body.code, 'idempotency_key_reused');
    }
    // Without the key, or with another one, the email is taken, as the contract says.
    assert.equal((await client.call(endpoints.signup, { body })).status, 409);
    assert.equal((await client.call(endpoints.signup, { idempotencyKey: 'another-key', body })).status, 409);
  });

  it('keeps signup keys per account: the same key for another email is another request', async () => {
    const { client } = env();
    const res = await client.call(endpoints.signup, {
      idempotencyKey: '5f0d7c1e-signup',
      body: { email: 'second@example.com', password, name: 'Retry' },
    });
    assert.equal(res.status, 201);
    assert.equal(res.headers['idempotent-replayed'], undefined);
  });

  it('replays email_taken for a retried signup that was refused', async () => {
    const { client } = env();
    const body = { email: 'retry@example.com', password: 'yet another passphrase', name: 'Late' };
    const first = await client.call(endpoints.signup, { idempotencyKey: 'late-1', body });
    const retry = await client.call(endpoints.signup, { idempotencyKey: 'late-1', body });
    assert.equal(first.status, 409);
    assert.equal(retry.status, 409);
    assert.equal(retry.headers['idempotent-replayed'], 'true');
  });
});

forEachEngine('demoting an admin', 'one', (env) => {
  /** A new user made admin by the bootstrap admin: its id and session token. */
  async function newAdmin() {
    const { client, adminToken, customer } = env();
    const u = await customer('Admin Too');
    await client.ok(endpoints.updateUser, { token: adminToken, params: { id: u.id }, body: { role: 'admin' } });
    return u;
  }

  it('revokes, at once, the API keys they are accountable for whose role is above their new one, keys made with their keys included', async () => {
    const { client, adminToken } = env();
    const x = await newAdmin();
    const mk = (token: string, name: string, role: 'admin' | 'staff' | 'customer') =>
      client.ok(endpoints.createApiKey, { token, body: { name, role } });
    const adminKey = await mk(x.token, 'x-admin', 'admin');
    const staffKey = await mk(x.token, 'x-staff', 'staff');
    const grandchild = await mk(adminKey.key, 'x-admin-made-by-key', 'admin');
    const othersKey = await mk(adminToken, 'not-x', 'admin');

    const listed = await client.ok(endpoints.listApiKeys, { token: adminToken, query: { limit: 100 } });
    const createdBy = Object.fromEntries(listed.data.map((k) => [k.name, k.createdBy]));
    assert.deepEqual(
      [createdBy['x-admin'], createdBy['x-staff'], createdBy['x-admin-made-by-key']],
      [x.id, x.id, x.id],
    );
    assert.notEqual(createdBy['not-x'], x.id);

    await client.ok(endpoints.updateUser, { token: adminToken, params: { id: x.id }, body: { role: 'staff' } });
    const status = async (key: string) => (await client.call(endpoints.me, { token: key })).status;
    assert.equal(await status(adminKey.key), 401, 'an admin key of the demoted admin is revoked');
    assert.equal(await status(grandchild.key), 401, 'and so is one made with it');
    assert.equal(await status(staffKey.key), 200, 'a key within the new role stays');
    assert.equal(await status(othersKey.key), 200, "another admin's key stays");
  });

  it('refuses to demote the only admin with 409 invalid_state', async () => {
    const { client, adminToken } = env();
    const me = await client.ok(endpoints.me, { token: adminToken });
    // Leave the bootstrap admin as the only one.
    const listed = await env().database.db.query<{ id: string }>(
      "SELECT id FROM users WHERE role = 'admin' AND id <> $1",
      [me.id],
    );
    for (const { id } of listed)
      await client.ok(endpoints.updateUser, { token: adminToken, params: { id }, body: { role: 'customer' } });
    const res = await client.call(endpoints.updateUser, {
      token: adminToken,
      params: { id: me.id },
      body: { role: 'staff' },
    });
    assert.equal(res.status, 409);
    assert.equal(res.body.code, 'invalid_state');
    assert.equal((await client.ok(endpoints.me, { token: adminToken })).role, 'admin');
  });
});

/** The ids of the users who are admins now. */
async function adminIds(env: () => TestEnv): Promise<string[]> {
  return (await env().database.db.query<{ id: string }>("SELECT id FROM users WHERE role = 'admin' ORDER BY id")).map(
    (r) => r.id,
  );
}

forEachEngine('demotions racing', 'one', (env) => {
  it('two admins demoting each other at the same moment leave one admin, round after round', async () => {
    const { client, adminToken, customer } = env();
    const boot = await client.ok(endpoints.me, { token: adminToken });
    const a = await customer('A');
    const b = await customer('B');
    await client.ok(endpoints.updateUser, { token: adminToken, params: { id: a.id }, body: { role: 'admin' } });
    await client.ok(endpoints.updateUser, { token: a.token, params: { id: boot.id }, body: { role: 'customer' } });
    for (let round = 0; round < 15; round++) {
      // Whoever is left promotes the other, then both demote each other at once.
      const [survivor] = await adminIds(env);
      const other = survivor === a.id ? b : a;
      const self = survivor === a.id ? a : b;
      await client.ok(endpoints.updateUser, { token: self.token, params: { id: other.id }, body: { role: 'admin' } });
      const results = await Promise.all([
        client.call(endpoints.updateUser, { token: a.token, params: { id: b.id }, body: { role: 'customer' } }),
        client.call(endpoints.updateUser, { token: b.token, params: { id: a.id }, body: { role: 'customer' } }),
      ]);
      const statuses = results.map((r) => r.status).sort();
      // The loser is refused as the last admin (409), or was demoted before its request was authorized (403).
      assert.ok(statuses[0] === 200 && (statuses[1] === 409 || statuses[1] === 403), `round ${round}: ${statuses}`);
      assert.equal((await adminIds(env)).length, 1, `round ${round}: one admin left`);
    }
  });

  it('an admin demoted while creating keys keeps no admin key', async () => {
    const { client, adminToken, customer, database } = env();
    const boot = await client.ok(endpoints.me, { token: adminToken });
    // Give the bootstrap admin its role back (the race above took it); it demotes X, round after round.
    await database.db.query("UPDATE users SET role = 'admin' WHERE id = $1", [boot.id]);
    const x = await customer('X');
    for (let round = 0; round < 8; round++) {
      await client.ok(endpoints.updateUser, { token: adminToken, params: { id: x.id }, body: { role: 'admin' } });
      const create = (i: number) =>
        client.call(endpoints.createApiKey, { token: x.token, body: { name: `race-${round}-${i}`, role: 'admin' } });
      const results = await Promise.all([
        ...Array.from({ length: 20 }, (_, i) => create(i)),
        client.call(endpoints.updateUser, { token: adminToken, params: { id: x.id }, body: { role: 'customer' } }),
        ...Array.from({ length: 20 }, (_, i) => create(20 + i)),
      ]);
      assert.equal(results[20]!.status, 200);
      const live = await database.db.query(
        "SELECT id FROM api_keys WHERE created_by = $1 AND role = 'admin' AND revoked_at IS NULL",
        [x.id],
      );
      assert.deepEqual(
        live,
        [],
        `round ${round}: every admin key made by the demoted admin is revoked or was never made`,
      );
    }
  });
});
