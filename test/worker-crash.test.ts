// A worker killed mid-charge: a real `engine-room start` process (API and in-process workers) is
// SIGKILLed at a point the test chooses (a failpoint where it stops and waits), then started
// again on the same database. The order must end paid, charged exactly once.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { engines, freshDatabase, type TestDatabase } from './support/database.ts';
import { startEngine, startLimitMs } from './support/engine-process.ts';
import { createClient, endpoints, fetchTransport } from '../src/client.ts';
import { waitFor } from './support/wait.ts';

const admin = { email: 'crash-admin@example.com', password: 'crash-admin-password' };

for (const engine of engines('parity')) {
  describe(`a worker killed mid-charge [${engine}]`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    after(async () => {
      for (const c of cleanups.reverse()) await c();
    });

    async function databaseEnv(): Promise<Record<string, string>> {
      if (engine === 'pglite') {
        const dir = await mkdtemp(join(tmpdir(), 'er-crash-'));
        cleanups.push(() => rm(dir, { recursive: true, force: true }));
        return { DATA_DIR: dir };
      }
      const database: TestDatabase = await freshDatabase('postgres', 2);
      await database.db.close();
      cleanups.push(() => database.drop().catch(() => {}));
      return { DATABASE_URL: database.url! };
    }

    for (const point of ['charge:after-provider', 'charge:before-provider']) {
      it(`killed at ${point}, restarted: the order ends paid and charged once`, async () => {
        const base = {
          ...(await databaseEnv()),
          ADMIN_EMAIL: admin.email,
          ADMIN_PASSWORD: admin.password,
          // Short leases so that the job of the dead worker comes back within the test.
          PAYMENT_JOB_LEASE_SECONDS: '2',
          QUEUE_MAINTENANCE_INTERVAL_SECONDS: '1',
          WORKER_POLL_INTERVAL_MS: '100',
        };
        const first = await startEngine({ ...base, ENGINE_ROOM_FAILPOINT: point });
        cleanups.push(async () => {
          await first.engine.kill('SIGKILL');
        });
        let api = createClient(fetchTransport(first.baseUrl));
        const { token: adminToken } = await api.ok(endpoints.login, { body: admin });
        await api.ok(endpoints.createProduct, {
          token: adminToken,
          body: { name: 'Crash', variants: [{ sku: 'CRASH', price: { amount: 4200, currency: 'EUR' }, stock: 5 }] },
        });
        const { token } = await api.ok(endpoints.signup, {
          body: { email: 'crash@example.com', password: 'crash customer password', name: 'C' },
        });
        const order = await api.ok(endpoints.placeOrder, {
          token,
          idempotencyKey: 'crash-1',
          body: { lines: [{ sku: 'CRASH', quantity: 1 }], payment: { method: 'card', token: 'tok_ok' } },
        });

        await first.engine.waitFor(`failpoint reached: ${point}`, startLimitMs);
        await first.engine.kill('SIGKILL');

        const second = await startEngine(base);
        cleanups.push(async () => {
          await second.engine.kill('SIGTERM');
        });
        api = createClient(fetchTransport(second.baseUrl));
        const paid = await waitFor(
          'the order to be paid after the restart',
          async () => {
            const o = await api.ok(endpoints.getOrder, { token, params: { id: order.id } });
            return o.status === 'paid' ? o : undefined;
          },
          startLimitMs,
        );
        assert.equal(paid.status, 'paid');
        const charges = (
          await api.ok(endpoints.listSandboxCharges, { token: adminToken, query: { limit: 100 } })
        ).data.filter((c) => c.orderId === order.id);
        assert.equal(charges.length, 1, 'the processor charged once');
        assert.equal(charges[0]!.status, 'succeeded');
        const stock = await api.ok(endpoints.getStock, { token: adminToken, params: { sku: 'CRASH' } });
        assert.deepEqual(stock, { sku: 'CRASH', onHand: 4, reserved: 0, available: 4 });
        const audit = await api.ok(endpoints.audit, { token: adminToken });
        assert.deepEqual(
          audit.checks.filter((c) => !c.ok),
          [],
        );
        assert.equal(await second.engine.kill('SIGTERM'), 0, 'a clean stop after recovery');
      });
    }
  });
}
