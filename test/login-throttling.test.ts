import { it } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine } from './support/app.ts';
import { buildApp } from '../src/app.ts';
import { createClient, endpoints } from '../src/client.ts';
import { injectTransport } from './support/app.ts';

const password = 'correct horse battery staple';

forEachEngine(
  'login throttling',
  'one',
  (env) => {
    it('answers 429 with Retry-After after repeated failures for one account, before checking the password', async () => {
      const { client } = env();
      await client.ok(endpoints.signup, { body: { email: 'target@example.com', password, name: 'T' } });
      for (let i = 0; i < 3; i++) {
        assert.equal(
          (await client.call(endpoints.login, { body: { email: 'target@example.com', password: 'wrong guess ' + i } }))
            .status,
          401,
        );
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
        const res = await createClient(injectTransport(other)).call(endpoints.login, {
          body: { email: 'target@example.com', password },
        });
        assert.equal(res.status, 429);
      } finally {
        await other.close();
      }
    });

    it('throttles one client address that tries many accounts', async () => {
      const { app } = env();
      const from = (i: number) =>
        app.inject({
          method: 'POST',
          url: '/v1/auth/login',
          remoteAddress: '203.0.113.9',
          payload: { email: `spray${i}@example.com`, password: 'guess' },
        });
      const codes: number[] = [];
      for (let i = 0; i < 6; i++) codes.push((await from(i)).statusCode);
      assert.deepEqual(codes, [401, 401, 401, 401, 401, 429]);
      // Another address is not affected.
      const elsewhere = await app.inject({
        method: 'POST',
        url: '/v1/auth/login',
        remoteAddress: '198.51.100.7',
        payload: { email: 'spray99@example.com', password: 'guess' },
      });
      assert.equal(elsewhere.statusCode, 401);
    });

    it('lets a blocked account in again once its window has passed', async () => {
      const { client, database } = env();
      await database.db.query(
        "UPDATE rate_limit_hits SET window_start = window_start - interval '1 day' WHERE bucket LIKE 'login:account:target@%'",
      );
      assert.equal(
        (await client.call(endpoints.login, { body: { email: 'target@example.com', password } })).status,
        200,
      );
    });
  },
  { LOGIN_MAX_FAILURES_PER_ACCOUNT: '3', LOGIN_MAX_FAILURES_PER_CLIENT: '5', LOGIN_WINDOW_SECONDS: '600' },
);

forEachEngine(
  'login throttling under a parallel burst',
  'one',
  (env) => {
    it('500 parallel guesses at one account, through two processes: at most the limit reach the password check, and the right password sent last is refused', async () => {
      const { client, database, config, app } = env();
      await client.ok(endpoints.signup, { body: { email: 'burst@example.com', password, name: 'B' } });
      const other = await buildApp(config, database.db, { logStream: { write: () => {} } });
      try {
        const guess = (i: number) =>
          (i % 2 === 0 ? app : other).inject({
            method: 'POST',
            url: '/v1/auth/login',
            remoteAddress: '203.0.113.50',
            payload: { email: 'burst@example.com', password: `wrong guess ${i}` },
          });
        const codes = (await Promise.all(Array.from({ length: 500 }, (_, i) => guess(i)))).map((r) => r.statusCode);
        const checked = codes.filter((c) => c === 401).length;
        // 503: on a busy machine a guess can wait past the pool's connect timeout; it is answered
        // unavailable (and gets no password check), which is as good as a refusal here.
        assert.equal(
          codes.filter((c) => c !== 401 && c !== 429 && c !== 503).length,
          0,
          `unexpected statuses: ${[...new Set(codes)]}`,
        );
        // Only an attempt that was counted within the limit gets a password check (and a 401).
        assert.ok(checked >= 1 && checked <= 10, `${checked} guesses reached the password check`);
        const right = await other.inject({
          method: 'POST',
          url: '/v1/auth/login',
          remoteAddress: '203.0.113.50',
          payload: { email: 'burst@example.com', password },
        });
        assert.equal(right.statusCode, 429);
      } finally {
        await other.close();
      }
    });

    it('a successful login does not use up the allowance of its client address', async () => {
      const { client, app } = env();
      await client.ok(endpoints.signup, { body: { email: 'often@example.com', password, name: 'O' } });
      for (let i = 0; i < 60; i++) {
        const res = await app.inject({
          method: 'POST',
          url: '/v1/auth/login',
          remoteAddress: '203.0.113.51',
          payload: { email: 'often@example.com', password },
        });
        assert.equal(res.statusCode, 200, `login ${i + 1}`);
      }
    });
  },
  { LOGIN_MAX_FAILURES_PER_ACCOUNT: '10', LOGIN_MAX_FAILURES_PER_CLIENT: '50', LOGIN_WINDOW_SECONDS: '600' },
);

forEachEngine(
  'the client address behind a proxy (TRUST_PROXY)',
  'one',
  (env) => {
    // The proxy at 10.0.0.2 appends the address it saw to whatever X-Forwarded-For the client sent.
    const login = (from: string, forwardedFor: string, i: number) =>
      env().app.inject({
        method: 'POST',
        url: '/v1/auth/login',
        remoteAddress: from,
        headers: { 'x-forwarded-for': forwardedFor },
        payload: { email: `proxied${i}@example.com`, password: 'guess' },
      });
    const codes = async (n: number, attempt: (i: number) => ReturnType<typeof login>) => {
      const seen: number[] = [];
      for (let i = 0; i < n; i++) seen.push((await attempt(i)).statusCode);
      return seen;
    };

    it('a forged left-most X-Forwarded-For does not make a new client: throttling counts the address the proxy saw', async () => {
      assert.deepEqual(
        await codes(4, (i) => login('10.0.0.2', `198.18.0.${i}, 203.0.113.77`, i)),
        [401, 401, 401, 429],
      );
      // Another real client behind the same proxy is not affected.
      assert.equal((await login('10.0.0.2', '198.18.0.1, 203.0.113.78', 9)).statusCode, 401);
    });

    it('skips every listed proxy from the right, and believes nothing a direct client sends', async () => {
      assert.deepEqual(
        await codes(4, (i) => login('10.0.0.2', `198.18.1.${i}, 203.0.113.79, 10.0.0.3`, i)),
        [401, 401, 401, 429],
      );
      assert.deepEqual(await codes(4, (i) => login('203.0.113.80', `198.18.2.${i}`, i)), [401, 401, 401, 429]);
    });

    it('counts an IPv6 client by its /64, where it can pick any address', async () => {
      assert.deepEqual(await codes(4, (i) => login('10.0.0.2', `2001:db8:5:6::${i + 1}`, i)), [401, 401, 401, 429]);
    });
  },
  { TRUST_PROXY: '10.0.0.0/8', LOGIN_MAX_FAILURES_PER_CLIENT: '3', LOGIN_WINDOW_SECONDS: '600' },
);

forEachEngine(
  'lockout and probing',
  'one',
  (env) => {
    const loginFrom = (address: string, email: string, pw: string) =>
      env().app.inject({
        method: 'POST',
        url: '/v1/auth/login',
        remoteAddress: address,
        payload: { email, password: pw },
      });

    it("an attacker's failures from one address do not keep the owner, at another address, from logging in", async () => {
      await env().client.ok(endpoints.signup, { body: { email: 'owner@example.com', password, name: 'O' } });
      const codes: number[] = [];
      for (let i = 0; i < 20 && codes.at(-1) !== 429; i++)
        codes.push((await loginFrom('203.0.113.10', 'owner@example.com', `guess ${i}`)).statusCode);
      assert.deepEqual(codes, [401, 401, 401, 429], 'the attacker is stopped after the per-account-and-client limit');
      assert.equal(
        (await loginFrom('203.0.113.10', 'owner@example.com', password)).statusCode,
        429,
        'even with the right password, from there',
      );
      assert.equal(
        (await loginFrom('198.51.100.20', 'owner@example.com', password)).statusCode,
        200,
        'the owner gets in from elsewhere',
      );
    });

    it('the per-account ceiling still stops guessing spread over many addresses', async () => {
      await env().client.ok(endpoints.signup, { body: { email: 'spread@example.com', password, name: 'S' } });
      const codes: number[] = [];
      for (let i = 0; i < 12; i++)
        codes.push((await loginFrom(`192.0.2.${i % 4}`, 'spread@example.com', `guess ${i}`)).statusCode);
      // Eight failures, two from each of four addresses (under their limit of 3), reach the ceiling of 8.
      assert.deepEqual(codes.slice(0, 8), Array(8).fill(401));
      assert.deepEqual(codes.slice(8), Array(4).fill(429));
      assert.equal(
        (await loginFrom('198.51.100.21', 'spread@example.com', password)).statusCode,
        429,
        'the ceiling holds for every address',
      );
    });
  },
  {
    LOGIN_MAX_FAILURES_PER_ACCOUNT_AND_CLIENT: '3',
    LOGIN_MAX_FAILURES_PER_ACCOUNT: '8',
    LOGIN_MAX_FAILURES_PER_CLIENT: '50',
    LOGIN_WINDOW_SECONDS: '600',
  },
);

forEachEngine(
  'signup throttling',
  'one',
  (env) => {
    const signupFrom = (address: string, email: string) =>
      env().app.inject({
        method: 'POST',
        url: '/v1/auth/signup',
        remoteAddress: address,
        payload: { email, password, name: 'P' },
      });

    it('answers 429 with Retry-After past the limit of signups from one address, taken emails or not; other addresses go on', async () => {
      const codes: number[] = [];
      for (const email of ['probe1@example.com', 'probe1@example.com', 'probe2@example.com', 'probe1@example.com'])
        codes.push((await signupFrom('203.0.113.30', email)).statusCode);
      assert.deepEqual(codes, [201, 409, 201, 429]);
      const blocked = await signupFrom('203.0.113.30', 'probe3@example.com');
      assert.equal(blocked.statusCode, 429);
      assert.equal(blocked.json().code, 'rate_limited');
      const retryAfter = Number(blocked.headers['retry-after']);
      assert.ok(retryAfter >= 1 && retryAfter <= 3600, `Retry-After ${blocked.headers['retry-after']}`);
      assert.equal(
        (await signupFrom('198.51.100.30', 'probe1@example.com')).statusCode,
        409,
        "another address still gets the contract's answer",
      );
    });
  },
  { SIGNUP_MAX_PER_CLIENT: '3', SIGNUP_WINDOW_SECONDS: '3600' },
);
