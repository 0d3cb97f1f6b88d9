// /metrics and /metrics/system: who may read them (the metrics token, or loopback without one), the
// system figures computed at most once per interval however often they are scraped, and the
// statuses they count being the ones clients got.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import Fastify, { type FastifyInstance } from 'fastify';
import { forEachEngine } from './support/app.ts';
import { waitFor } from './support/wait.ts';
import { buildApp } from '../src/app.ts';
import type { Db } from '../src/platform/db.ts';
import { createCounters, registerMetrics } from '../src/platform/metrics.ts';
import { registerHttpPlatform } from '../src/platform/http.ts';
import { cachedSystemMetrics } from '../src/modules/operations/system-metrics.ts';

const quiet = { logStream: { write: () => {} } };
const metricsToken = 'scrape-token-0123456789abcdef';
const urls = ['/metrics', '/metrics/system'];

function scrape(
  app: FastifyInstance,
  url: string,
  options: { token?: string; address?: string; headers?: Record<string, string> } = {},
) {
  return app.inject({
    method: 'GET',
    url,
    remoteAddress: options.address ?? '127.0.0.1',
    headers: {
      ...(options.token !== undefined ? { authorization: `Bearer ${options.token}` } : {}),
      ...options.headers,
    },
  });
}

/** The same database, its queries of ops_totals (the first of /metrics/system's) counted. */
function counting(db: Db): { db: Db; computations: () => number } {
  let n = 0;
  const query: Db['query'] = (sql, params) => {
    if (/FROM ops_totals/.test(sql)) n++;
    return db.query(sql, params);
  };
  return { db: { ...db, query }, computations: () => n };
}

forEachEngine(
  'metrics need the metrics token',
  'one',
  (env) => {
    it('without the token, or with a wrong one, both answer 401 problem+json, from loopback too', async () => {
      const { app } = env();
      for (const url of urls) {
        for (const token of [
          undefined,
          'wrong-token-0123456789abcdef',
          `${metricsToken}x`,
          metricsToken.slice(0, -1),
        ]) {
          const res = await scrape(app, url, token === undefined ? {} : { token });
          assert.equal(res.statusCode, 401, `${url} with ${token}`);
          assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
          assert.equal(res.json().code, 'unauthenticated');
          assert.equal(res.headers['www-authenticate'], 'Bearer realm="metrics"');
          assert.doesNotMatch(res.body, /engine_room|http_requests_total/);
        }
      }
    });

    it('with the right token both answer 200 in Prometheus text format, from any address; health and readiness stay public', async () => {
      const { app } = env();
      for (const url of urls) {
        const res = await scrape(app, url, { token: metricsToken, address: '198.51.100.7' });
        assert.equal(res.statusCode, 200, res.body);
        assert.match(String(res.headers['content-type']), /^text\/plain/);
      }
      assert.match(
        (await scrape(app, '/metrics', { token: metricsToken })).body,
        /^http_requests_total\{method="GET",route="\/metrics",status="401"\} \d+$/m,
      );
      assert.match(
        (await scrape(app, '/metrics/system', { token: metricsToken })).body,
        /^# TYPE engine_room_orders_total counter$/m,
      );
      for (const url of ['/healthz', '/readyz'])
        assert.equal((await scrape(app, url, { address: '198.51.100.7' })).statusCode, 200, url);
    });

    it('50 scrapes of /metrics/system at once compute its figures once, and scrapes within the interval reuse them', async () => {
      const { config, database } = env();
      const { db, computations } = counting(database.db);
      const app = await buildApp(config, db, quiet);
      try {
        const answers = await Promise.all(
          Array.from({ length: 50 }, () => scrape(app, '/metrics/system', { token: metricsToken })),
        );
        assert.deepEqual([...new Set(answers.map((r) => r.statusCode))], [200]);
        assert.equal(new Set(answers.map((r) => r.body)).size, 1, 'every scrape got the same figures');
        assert.equal(computations(), 1);
        assert.equal((await scrape(app, '/metrics/system', { token: metricsToken })).statusCode, 200);
        // Refused scrapes cost nothing either.
        await Promise.all(
          Array.from({ length: 20 }, () => scrape(app, '/metrics/system', { token: 'wrong-token-0123456789abcdef' })),
        );
        assert.equal(computations(), 1);
      } finally {
        await app.close();
      }
    });
  },
  { METRICS_TOKEN: metricsToken },
);

forEachEngine('metrics without a metrics token', 'one', (env) => {
  it('answer on loopback only, and refuse (403) what a proxy forwarded or another address asks', async () => {
    const { app } = env();
    for (const url of urls) {
      assert.equal((await scrape(app, url)).statusCode, 200, url);
      assert.equal((await scrape(app, url, { address: '::1' })).statusCode, 200, url);
      const refusals: { address?: string; headers?: Record<string, string> }[] = [
        { address: '198.51.100.8' },
        { headers: { 'x-forwarded-for': '198.51.100.8' } },
        { headers: { forwarded: 'for=198.51.100.8' } },
        { headers: { 'x-real-ip': '198.51.100.8' } },
      ];
      for (const refused of refusals) {
        const res = await scrape(app, url, refused);
        assert.equal(res.statusCode, 403, `${url} ${JSON.stringify(refused)}`);
        assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
        assert.match(res.json().detail, /METRICS_TOKEN/);
      }
    }
  });

  it('METRICS=off serves neither', async () => {
    const { config, database } = env();
    const app = await buildApp({ ...config, metrics: false }, database.db, quiet);
    try {
      for (const url of urls) assert.equal((await scrape(app, url)).statusCode, 404, url);
      assert.equal((await scrape(app, '/healthz')).statusCode, 200);
    } finally {
      await app.close();
    }
  });
});

describe('the system figures, cached', () => {
  it('are computed again once the interval has passed, and a failed computation is not kept', async () => {
    let clock = 0;
    let calls = 0;
    let fail = false;
    const db = {
      query: async (sql: string) => {
        if (/FROM ops_totals/.test(sql)) calls++;
        if (fail) throw new Error('the database went away');
        return [];
      },
    } as unknown as Db;
    const figures = cachedSystemMetrics(db, { streamFreshSeconds: 35, ttlMs: 5000, now: () => clock });
    await figures();
    clock = 4999;
    await figures();
    assert.equal(calls, 1);
    clock = 5000;
    fail = true;
    await assert.rejects(figures());
    assert.equal(calls, 2);
    fail = false;
    await figures();
    assert.equal(calls, 3, 'the failure was not kept');
  });
});

describe('the statuses the metrics count', () => {
  it('are those the client got, even when an error is handled after the answer went out', async () => {
    const app = Fastify({ logger: false });
    await registerHttpPlatform(app, { corsOrigins: [] });
    const counters = createCounters();
    const registry = registerMetrics(app, { counters });
    // As a handler whose work fails once its answer is out: the error handler runs on a sent reply.
    app.post('/late-failure', async (request, reply) => {
      await reply.code(201).send({ ok: true });
      app.errorHandler(new Error('failed after the answer'), request, reply);
    });
    try {
      // Over a real socket, as in production: 'finish' (and onResponse) comes after the handler went on.
      const base = await app.listen({ port: 0, host: '127.0.0.1' });
      const res = await fetch(`${base}/late-failure`, { method: 'POST' });
      assert.equal(res.status, 201);
      assert.deepEqual(await res.json(), { ok: true });
      await waitFor('the request to be counted', async () =>
        (await registry.getSingleMetric('http_requests_total')?.get())?.values.length ? true : undefined,
      );
      const text = await registry.metrics();
      assert.match(text, /^http_requests_total\{method="POST",route="\/late-failure",status="201"\} 1$/m);
      assert.doesNotMatch(text, /status="500"/);
      assert.deepEqual(Object.keys(counters.drain()?.counters ?? {}), ['http.requests\t2xx']);
    } finally {
      await app.close();
    }
  });
});
