import { it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { forEachEngine } from './support/app.ts';
import { waitFor } from './support/wait.ts';
import { buildApp } from '../src/app.ts';

const quiet = { logStream: { write: () => {} } };
const metricsToken = 'scrape-token-0123456789abcdef';

function get(
  app: FastifyInstance,
  url: string,
  from: { address?: string; token?: string },
): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'GET',
    url,
    remoteAddress: from.address ?? '127.0.0.1',
    headers: from.token ? { authorization: `Bearer ${from.token}` } : {},
  });
}

/** Asks until the first 429 (the window may roll over meanwhile: then it goes on); answers it. */
async function untilRefused(ask: () => Promise<LightMyRequestResponse>, atMost = 200): Promise<LightMyRequestResponse> {
  for (let i = 0; i < atMost; i++) {
    const res = await ask();
    if (res.statusCode === 429) return res;
    assert.equal(res.statusCode, 200, res.body);
  }
  throw new Error(`no 429 within ${atMost} requests`);
}

function assertRefusal(res: LightMyRequestResponse, policy: string, max: number, window: number): void {
  assert.equal(res.statusCode, 429);
  assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
  assert.equal(res.json().code, 'rate_limited');
  assert.equal(res.headers['ratelimit-policy'], `"${policy}";q=${max};w=${window}`);
  const m = /^"(\w+)";r=(\d+);t=(\d+)$/.exec(String(res.headers.ratelimit));
  assert.ok(m, `RateLimit: ${res.headers.ratelimit}`);
  assert.equal(m[1], policy);
  assert.equal(m[2], '0');
  const retryAfter = Number(res.headers['retry-after']);
  assert.ok(retryAfter >= 1 && retryAfter <= window, `Retry-After ${res.headers['retry-after']}`);
  assert.equal(Number(m[3]), retryAfter);
}

// A short window, to see one reset.
forEachEngine(
  'API rate limits: refusal and reset',
  'one',
  (env) => {
    it('an anonymous reader past the read limit gets 429 with Retry-After, RateLimit and RateLimit-Policy; after the window it is let in again', async () => {
      const { app } = env();
      const first = await get(app, '/v1/products', { address: '203.0.113.1' });
      assert.equal(first.statusCode, 200);
      assert.equal(first.headers['ratelimit-policy'], '"read";q=5;w=2');
      assert.match(String(first.headers.ratelimit), /^"read";r=[0-4];t=[12]$/);
      assertRefusal(await untilRefused(() => get(app, '/v1/products', { address: '203.0.113.1' })), 'read', 5, 2);
      // Another address has its own allowance.
      assert.equal((await get(app, '/v1/products', { address: '203.0.113.2' })).statusCode, 200);
      await waitFor('the window to reset', async () =>
        (await get(app, '/v1/products', { address: '203.0.113.1' })).statusCode === 200 ? true : undefined,
      );
    });

    it('writes have their own, tighter limit, counted per user: reads of the same user still pass', async () => {
      const { app, adminToken } = env();
      const createKey = () =>
        app.inject({
          method: 'POST',
          url: '/v1/api-keys',
          headers: { authorization: `Bearer ${adminToken}` },
          payload: { name: 'k', role: 'admin' },
        });
      const refused = await untilRefused(async () => {
        const res = await createKey();
        return res.statusCode === 201 ? ({ ...res, statusCode: 200 } as LightMyRequestResponse) : res;
      });
      assertRefusal(refused, 'write', 3, 2);
      assert.equal((await get(app, '/v1/me', { token: adminToken })).statusCode, 200);
    });
  },
  { RATE_LIMIT_WINDOW_SECONDS: '2', RATE_LIMIT_READ_MAX: '5', RATE_LIMIT_WRITE_MAX: '3', RATE_LIMIT_AUTH_MAX: '1000' },
);

// A long window, so that no burst straddles two.
forEachEngine(
  'API rate limits: whose allowance, shared across processes',
  'one',
  (env) => {
    it('a user is counted by user, an API key by key, anyone else by client address', async () => {
      const { app, adminToken, customer } = env();
      const alice = await customer('Alice');
      const key = await app.inject({
        method: 'POST',
        url: '/v1/api-keys',
        headers: { authorization: `Bearer ${adminToken}` },
        payload: { name: 'shop backend', role: 'admin' },
      });
      assert.equal(key.statusCode, 201);
      const apiKey = key.json().key as string;
      // Alice uses up her reads, from one address...
      assertRefusal(
        await untilRefused(() => get(app, '/v1/me', { token: alice.token, address: '198.51.100.1' })),
        'read',
        20,
        3600,
      );
      // ...which leaves the address's anonymous allowance, the admin user and the admin's API key alone.
      assert.equal((await get(app, '/v1/products', { address: '198.51.100.1' })).statusCode, 200);
      assert.equal((await get(app, '/v1/me', { token: adminToken, address: '198.51.100.1' })).statusCode, 200);
      assertRefusal(await untilRefused(() => get(app, '/v1/me', { token: adminToken })), 'read', 20, 3600);
      const byKey = await get(app, '/v1/me', { token: apiKey });
      assert.equal(byKey.statusCode, 200);
      assert.equal(byKey.headers['ratelimit-policy'], '"read";q=20;w=3600');
      // Login is limited by address whoever asks: a signed-in user's token does not change whose allowance it is.
      const login = (address: string) =>
        app.inject({
          method: 'POST',
          url: '/v1/auth/login',
          remoteAddress: address,
          headers: { authorization: `Bearer ${alice.token}` },
          payload: { email: 'nobody@example.com', password: 'x' },
        });
      let res: LightMyRequestResponse | undefined;
      for (let i = 0; i < 20 && res?.statusCode !== 429; i++) res = await login('198.51.100.9');
      assert.equal(res!.statusCode, 429);
      assert.equal(res!.headers['ratelimit-policy'], '"auth";q=4;w=3600');
      assert.equal((await login('198.51.100.10')).statusCode, 401);
    });

    it('health, readiness and metrics are never limited and carry no RateLimit headers', async () => {
      const { app } = env();
      const address = '198.51.100.20';
      await untilRefused(() => get(app, '/v1/products', { address }));
      for (const url of ['/healthz', '/readyz', '/metrics', '/metrics/system']) {
        for (let i = 0; i < 25; i++) {
          const res = await get(app, url, { address, ...(url.startsWith('/metrics') ? { token: metricsToken } : {}) });
          assert.equal(res.statusCode, 200, `${url}: ${res.body.slice(0, 200)}`);
          assert.equal(res.headers.ratelimit, undefined, url);
        }
      }
      assert.match(
        (await get(app, '/metrics', { address, token: metricsToken })).body,
        /engine_room_requests_rate_limited_total\{policy="read"\} [1-9]/,
      );
    });

    it('made-up tokens from one address are counted against it: past the limit they get 429 and are no longer looked up', async () => {
      const { config, database, customers } = env();
      // Written to the database: a signup would take from the auth allowance the last test needs.
      const [dana] = await customers(1);
      let lookups = 0;
      const db = {
        ...database.db,
        query: ((sql: string, params?: unknown[]) => {
          if (/FROM sessions s JOIN users/.test(sql)) lookups++;
          return database.db.query(sql, params);
        }) as typeof database.db.query,
      };
      const counted = await buildApp(config, db, quiet);
      try {
        const address = '198.51.100.30';
        const answers: number[] = [];
        for (let i = 0; i < 100; i++)
          answers.push(
            (await get(counted, '/v1/me', { address, token: `ers_${randomBytes(32).toString('base64url')}` }))
              .statusCode,
          );
        // The read limit is 20: 20 refusals, then 429 without a lookup.
        assert.deepEqual(answers, [...Array<number>(20).fill(401), ...Array<number>(80).fill(429)]);
        assert.equal(lookups, 20);
        const refused = await get(counted, '/v1/me', { address, token: 'ers_madeup' });
        assertRefusal(refused, 'read', 20, 3600);
        // Another address, and the same address's anonymous reads, have their own allowances.
        assert.equal((await get(counted, '/v1/me', { address: '198.51.100.31', token: dana!.token })).statusCode, 200);
        assert.equal((await get(counted, '/v1/products', { address })).statusCode, 200);
        // A malformed Authorization header and a role refused (403) count the same way.
        const other = '198.51.100.32';
        const statuses = new Set<number>();
        for (let i = 0; i < 21; i++)
          statuses.add(
            (
              await counted.inject({
                method: 'GET',
                url: '/v1/api-keys',
                remoteAddress: other,
                headers: { authorization: i % 2 ? `Bearer ${dana!.token}` : 'Basic x' },
              })
            ).statusCode,
          );
        assert.deepEqual([...statuses].sort(), [401, 403, 429]);
      } finally {
        await counted.close();
      }
    });

    it('two app instances on one database share one limit', async () => {
      const { app, config, database, customer } = env();
      const bob = await customer('Bob');
      const other = await buildApp(config, database.db, quiet);
      try {
        const answers: number[] = [];
        for (let i = 0; i < 40; i++)
          answers.push((await get(i % 2 === 0 ? app : other, '/v1/me', { token: bob.token })).statusCode);
        const admitted = answers.filter((s) => s === 200).length;
        // Alone, each would admit 20 (40 in all); together at most max - 1 + 2 × share (share 2).
        assert.ok(admitted >= 20 && admitted <= 23, `admitted ${admitted}: ${answers.join(' ')}`);
        assert.equal(answers.filter((s) => s === 429).length, 40 - admitted);
        assert.deepEqual(answers.slice(-4), [429, 429, 429, 429]);
      } finally {
        await other.close();
      }
    });

    it('200 parallel requests through two instances admit no more than the documented bound', async () => {
      const { app, config, database, customer } = env();
      const carol = await customer('Carol');
      const other = await buildApp(config, database.db, quiet);
      try {
        const answers = await Promise.all(
          Array.from({ length: 200 }, (_, i) => get(i % 2 === 0 ? app : other, '/v1/me', { token: carol.token })),
        );
        const codes = answers.map((r) => r.statusCode);
        assert.deepEqual([...new Set(codes)].sort(), [200, 429]);
        const admitted = codes.filter((s) => s === 200).length;
        // max 20, share ceil(20 × 10 %) = 2, two processes: 20 ≤ admitted ≤ 20 - 1 + 2 × 2.
        assert.ok(admitted >= 20 && admitted <= 23, `admitted ${admitted}`);
        // What the database holds is what was admitted (every local count was sent).
        await waitFor('the counts to be shared', async () => {
          const [row] = await database.db.query<{ hits: number }>(
            'SELECT hits FROM rate_limit_hits WHERE bucket = $1',
            [`api:read:user:${carol.id}`],
          );
          return row?.hits === admitted ? true : undefined;
        });
      } finally {
        await other.close();
      }
    });
  },
  {
    RATE_LIMIT_WINDOW_SECONDS: '3600',
    RATE_LIMIT_READ_MAX: '20',
    RATE_LIMIT_WRITE_MAX: '1000',
    RATE_LIMIT_AUTH_MAX: '4',
    METRICS_TOKEN: metricsToken,
  },
);
