// Two API processes (WORKERS=off) and two worker processes on one PostgreSQL, as `npm run chaos`
// runs them, show as one system: either API process answers the same overview, with the four
// processes listed, the requests that the other one served, the orders both took, and the charges
// that the workers made.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createClient, endpoints, fetchTransport, type Client } from '../src/client.ts';
import { freshDatabase, postgresUrl, type TestDatabase } from './support/database.ts';
import { spawnEngine, startLimitMs, type EngineProcess } from './support/engine-process.ts';
import { startOwnEngine } from './support/own-engine.ts';
import { waitFor } from './support/wait.ts';

describe(
  'two API and two worker processes on PostgreSQL',
  { skip: postgresUrl ? false : 'needs TEST_DATABASE_URL' },
  () => {
    let database: TestDatabase;
    const processes: EngineProcess[] = [];
    const api: Client[] = [];
    const urls: string[] = [];
    const admin = { email: 'fleet-admin@example.com', password: 'fleet-admin-password' };

    before(async () => {
      database = await freshDatabase('postgres', 2);
      await database.db.close();
      const env = {
        DATABASE_URL: database.url!,
        ADMIN_EMAIL: admin.email,
        ADMIN_PASSWORD: admin.password,
        WORKER_POLL_INTERVAL_MS: '100',
        DATABASE_POOL_SIZE: '4',
      };
      // The first alone: it declares the queues (processes declaring them at once can deadlock).
      const first = await startOwnEngine({ ...env, WORKERS: 'off' });
      processes.push(first.server);
      const second = await startOwnEngine({ ...env, WORKERS: 'off' });
      processes.push(second.server);
      urls.push(first.baseUrl, second.baseUrl);
      api.push(createClient(fetchTransport(first.baseUrl)), createClient(fetchTransport(second.baseUrl)));
      for (let i = 0; i < 2; i++) {
        const worker = spawnEngine(['worker'], env);
        processes.push(worker);
        await worker.waitFor('Engine Room worker running', startLimitMs);
      }
    });

    after(async () => {
      await Promise.all(processes.map((p) => p.kill('SIGTERM')));
      await database?.drop();
    });

    it("either API process shows the whole system: four processes, both processes' requests, every order and charge", async () => {
      const [a, b] = api as [Client, Client];
      const token = (await a.ok(endpoints.login, { body: admin })).token;
      await a.ok(endpoints.createProduct, {
        token,
        body: {
          name: 'Fleet mug',
          variants: [{ sku: 'FLEET-MUG', price: { amount: 900, currency: 'EUR' }, stock: 100 }],
        },
      });
      const buyer = await b.ok(endpoints.signup, {
        body: {
          email: `fleet-${Date.now()}@example.com`,
          password: 'correct horse battery staple',
          name: 'Fleet buyer',
        },
      });
      for (let i = 0; i < 10; i++) {
        await (i % 2 === 0 ? a : b).ok(endpoints.placeOrder, {
          token: buyer.token,
          idempotencyKey: `fleet-${i}`,
          body: { lines: [{ sku: 'FLEET-MUG', quantity: 1 }], payment: { method: 'card', token: 'tok_ok' } },
        });
      }
      // Seven 404s served by the second API process only.
      for (let i = 0; i < 7; i++) await b.call(endpoints.getOrder, { token, params: { id: 'ord_fleet_missing' } });

      const overview = await waitFor(
        'the whole system in the overview',
        async () => {
          const o = await a.ok(endpoints.operationsOverview, { token, query: { window: 900 } });
          const notFound = o.traffic.topErrors.find((e) => e.route === 'GET /v1/orders/:id' && e.status === 404);
          const ready =
            o.processes.length === 4 &&
            o.orders.placed === 10 &&
            o.orders.paid === 10 &&
            o.charges.succeeded === 10 &&
            notFound?.count === 7;
          return ready ? o : undefined;
        },
        60_000,
      );
      const roles = overview.processes.map((p) => p.roles.join('+')).sort();
      assert.deepEqual(roles, ['api', 'api', 'worker', 'worker']);
      assert.deepEqual(overview.processes.map((p) => p.pid).sort(), processes.map((p) => p.child.pid).sort());
      assert.ok(overview.processes.every((p) => p.pool !== null && p.pool.size <= 4));
      assert.equal(overview.database.engine, 'postgres');
      assert.ok(overview.database.poolSize > 0);
      assert.deepEqual(overview.orders.paidAmounts, [{ currency: 'EUR', amount: 9000 }]);

      // The other API process answers the same figures.
      const fromB = await b.ok(endpoints.operationsOverview, { token, query: { window: 900 } });
      assert.equal(fromB.orders.placed, 10);
      assert.equal(fromB.processes.length, 4);
      // The system series: the same from both, so they are scraped once.
      const ordersTotal = async (url: string) =>
        /^engine_room_orders_total\{event="paid",currency="EUR"\} (\d+)$/m.exec(
          await (await fetch(`${url}/metrics/system`)).text(),
        )?.[1];
      assert.equal(await ordersTotal(urls[0]!), '10');
      assert.equal(await ordersTotal(urls[1]!), '10');
    });
  },
);
