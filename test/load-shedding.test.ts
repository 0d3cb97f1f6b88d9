import { it } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { forEachEngine } from './support/app.ts';
import { waitFor } from './support/wait.ts';
import { buildApp } from '../src/app.ts';
import type { Config } from '../src/config.ts';
import type { Db } from '../src/platform/db.ts';

/** An app that sheds at these thresholds (built after the suite's set-up, which would trip them). */
async function sheddingApp(config: Readonly<Config>, db: Db, thresholds: Partial<Pick<Config, 'shedEventLoopDelayMs' | 'shedDbWaiting' | 'shedMaxInFlight'>>): Promise<FastifyInstance> {
  return buildApp({ ...config, shedEventLoopDelayMs: 0, shedDbWaiting: 0, shedMaxInFlight: 0, ...thresholds }, db, { logStream: { write: () => {} } });
}

const get = (app: FastifyInstance, url: string): Promise<LightMyRequestResponse> => app.inject({ method: 'GET', url });

function assertShed(res: LightMyRequestResponse): void {
  assert.equal(res.statusCode, 503, res.body);
  assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
  assert.equal(res.json().code, 'unavailable');
  assert.equal(res.headers['retry-after'], '1');
}

forEachEngine('load shedding: waiting for a database connection', (env) => {
  it('with every connection held and more work waiting than the threshold, a request is answered 503 at once; health and metrics still answer; then it passes again', async (t) => {
    const { config, database } = env();
    const app = await sheddingApp(config, database.db, { shedDbWaiting: 3, shedEventLoopDelayMs: 0 });
    t.after(() => app.close());
    assert.equal((await get(app, '/v1/products')).statusCode, 200);
    // Hold every connection of the pool (PGlite: its one connection) in open transactions...
    let release!: () => void;
    const gate = new Promise<void>((resolve) => { release = resolve; });
    const holding = Array.from({ length: database.db.engine === 'postgres' ? 20 : 1 }, () => database.db.transaction(async (tx) => {
      await tx.query('SELECT 1');
      await gate;
    }));
    // ...and queue more statements behind them than the threshold (3).
    const queued = Array.from({ length: 4 }, () => database.db.query('SELECT 1'));
    try {
      await waitFor('the statements to wait for a connection', async () => (database.db.waiting() >= 4 ? true : undefined));
      assertShed(await get(app, '/v1/products'));
      assert.equal((await get(app, '/healthz')).statusCode, 200);
      const metrics = await get(app, '/metrics');
      assert.equal(metrics.statusCode, 200);
      assert.match(metrics.body, /engine_room_requests_shed_total\{reason="database"\} [1-9]/);
    } finally {
      release();
      await Promise.all([...holding, ...queued]);
    }
    await waitFor('the queue to drain', async () => (database.db.waiting() === 0 ? true : undefined));
    assert.equal((await get(app, '/v1/products')).statusCode, 200);
  });
});

forEachEngine('load shedding: event-loop delay', (env) => {
  it('while the event loop is held back past the threshold, requests are answered 503 at once; health still answers; then they pass again', async (t) => {
    const { config, database } = env();
    const app = await sheddingApp(config, database.db, { shedDbWaiting: 0, shedEventLoopDelayMs: 50 });
    t.after(() => app.close());
    await waitFor('requests to pass', async () => ((await get(app, '/v1/products')).statusCode === 200 ? true : undefined));
    // Keep the event loop busy 120 ms of every 130 (the threshold is 50 ms).
    const busy = setInterval(() => {
      const until = Date.now() + 120;
      while (Date.now() < until) { /* holding the event loop */ }
    }, 10);
    try {
      const shed = await waitFor('a request to be shed', async () => {
        const res = await get(app, '/v1/products');
        return res.statusCode === 503 ? res : undefined;
      });
      assertShed(shed);
      assert.match(shed.json().detail, /overloaded/);
      assert.equal((await get(app, '/healthz')).statusCode, 200);
      assert.match((await get(app, '/metrics')).body, /engine_room_requests_shed_total\{reason="event_loop"\} [1-9]/);
    } finally {
      clearInterval(busy);
    }
    await waitFor('requests to pass again', async () => ((await get(app, '/v1/products')).statusCode === 200 ? true : undefined));
  });
});

forEachEngine('load shedding: requests in flight', (env) => {
  it('past the most requests in flight a request is answered 503 at once; health still answers; as answers go out, requests pass again', async (t) => {
    const { config, database } = env();
    const app = await sheddingApp(config, database.db, { shedMaxInFlight: 3 });
    t.after(() => app.close());
    // Three requests held in flight: they wait behind a transaction that locks the products (PGlite: holds its one connection).
    let release!: () => void;
    const gate = new Promise<void>((resolve) => { release = resolve; });
    let holding: Promise<unknown> | undefined;
    let held: Promise<LightMyRequestResponse>[] | undefined;
    try {
      const locked = new Promise<void>((resolve) => {
        holding = database.db.transaction(async (tx) => {
          await tx.query('LOCK TABLE products IN ACCESS EXCLUSIVE MODE');
          resolve();
          await gate;
        });
      });
      await locked;
      held = Array.from({ length: 3 }, () => get(app, '/v1/products'));
      const shed = await waitFor('a request past the cap to be shed', async () => {
        // A request that needs no database: admitted, it answers at once (until the three are in flight).
        const res = await get(app, '/v1/auth/session');
        return res.statusCode === 503 ? res : undefined;
      });
      assertShed(shed);
      assert.equal((await get(app, '/healthz')).statusCode, 200);
      assert.match((await get(app, '/metrics')).body, /engine_room_requests_shed_total\{reason="in_flight"\} [1-9]/);
    } finally {
      release();
      await holding;
    }
    for (const res of await Promise.all(held ?? [])) assert.equal(res.statusCode, 200);
    await waitFor('requests to pass again', async () => ((await get(app, '/v1/products')).statusCode === 200 ? true : undefined));
  });
});
