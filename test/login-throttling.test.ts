import { it } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine } from './support/app.js';
import { buildApp } from '../src/app.js';
import { createClient, endpoints } from '../src/client.js';
import { injectTransport } from './support/app.js';

const password = 'correct horse battery staple';

forEachEngine('login throttling', (env) => {
  it('answers 429 with Retry-After after repeated failures for one account, before checking the password', async () => {
    const { client } = env();
    await client.ok(endpoints.signup, { body: { email: 'target@example.com', password, name: 'T' } });
    for (let i = 0; i < 3; i++) {
      assert.equal((await client.call(endpoints.login, { body: { email: 'target@example.com', password: 'wrong guess ' + i } })).status, 401);
    }
    // The right password is not even looked at now.
    const blocked = await client.call(endpoints.login, { body: { email: 'TARGET@example.com', password } });
    assert.equal(blocked.status, 429);
    assert.equal((blocked.body as { code: string }).code, 'rate_limited');
    const retryAfter = Number(blocked.headers['retry-after']);
    assert.ok(retryAfter >= 1 && retryAfter <= 3600, `Retry-After ${blocked.headers['retry-after']}`);
  });

  it('holds the limit across processes: a second app on the same database sees the same count', async () => {
    const { database, config } = env();
    const other = await buildApp(config, database.db, { logStream: { write: () => {} } });
    try {
      const res = await createClient(injectTransport(other)).call(endpoints.login, { body: { email: 'target@example.com', password } });
      assert.equal(res.status, 429);
    } finally {
      await other.close();
    }
  });

  it('throttles one client address that tries many accounts', async () => {
    const { app } = env();
    const from = (i: number) => app.inject({ method: 'POST', url: '/v1/auth/login', remoteAddress: '203.0.113.9', payload: { email: `spray${i}@example.com`, password: 'guess' } });
    const codes: number[] = [];
    for (let i = 0; i < 6; i++) codes.push((await from(i)).statusCode);
    assert.deepEqual(codes, [401, 401, 401, 401, 401, 429]);
    // Another address is not affected.
    const elsewhere = await app.inject({ method: 'POST', url: '/v1/auth/login', remoteAddress: '198.51.100.7', payload: { email: 'spray99@example.com', password: 'guess' } });
    assert.equal(elsewhere.statusCode, 401);
  });

  it('lets a blocked account in again once its window has passed', async () => {
    const { client, database } = env();
    await database.db.query("UPDATE rate_limit_hits SET window_start = window_start - interval '1 day' WHERE bucket LIKE 'login:account:target@%'");
    assert.equal((await client.call(endpoints.login, { body: { email: 'target@example.com', password } })).status, 200);
  });
}, { LOGIN_MAX_FAILURES_PER_ACCOUNT: '3', LOGIN_MAX_FAILURES_PER_CLIENT: '5', LOGIN_WINDOW_SECONDS: '600' });
