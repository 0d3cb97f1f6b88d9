// End-to-end time from POST /v1/orders to `paid`, with the workers inside the `start` process.
// A measurement, not a test. It starts `engine-room start` on a scratch database (PostgreSQL by
// default, --embedded for PGlite), places orders one after another at a steady pace, and reads the
// server's own timestamps of each order (created_at, and updated_at when it became paid).
//
//   node bench/order-to-paid.ts [--orders 300] [--rate 50] [--embedded]
import { parseArgs } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createClient, endpoints, fetchTransport } from '../src/client.ts';
import { startEngine } from '../test/support/engine-process.ts';
import { openPglite } from '../src/platform/db.ts';

const { values } = parseArgs({
  options: {
    orders: { type: 'string', default: '300' },
    rate: { type: 'string', default: '50' },
    embedded: { type: 'boolean', default: false },
    'database-url': { type: 'string', default: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test' },
  },
});
const count = Number(values.orders);
const rate = Number(values.rate);
const admin = { email: 'e2e-admin@example.com', password: 'e2e-admin-password' };

function pct(sorted: number[], p: number) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main() {
  const scratch = `er_e2e_${Date.now().toString(36)}`;
  const base = values['database-url']!;
  const url = new URL(base);
  url.pathname = '/' + scratch;
  let dataDir = '';
  if (values.embedded) dataDir = await mkdtemp(join(tmpdir(), 'er-e2e-'));
  else {
    const c = new pg.Client({ connectionString: base });
    await c.connect();
    await c.query(`CREATE DATABASE ${scratch}`);
    await c.end();
  }
  const env: Record<string, string> = values.embedded ? { DATA_DIR: dataDir } : { DATABASE_URL: url.toString() };
  const { engine, baseUrl } = await startEngine({ ...env, ADMIN_EMAIL: admin.email, ADMIN_PASSWORD: admin.password });
  try {
    const api = createClient(fetchTransport(baseUrl));
    const { token: adminToken } = await api.ok(endpoints.login, { body: admin });
    await api.ok(endpoints.createProduct, {
      token: adminToken,
      body: { name: 'E2E', variants: [{ sku: 'E2E', price: { amount: 1000, currency: 'EUR' }, stock: 1_000_000 }] },
    });
    const { token } = await api.ok(endpoints.signup, {
      body: { email: 'e2e@example.com', password: 'e2e customer password', name: 'E' },
    });
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      const t0 = Date.now();
      ids.push(
        (
          await api.ok(endpoints.placeOrder, {
            token,
            idempotencyKey: `e2e-${i}`,
            body: { lines: [{ sku: 'E2E', quantity: 1 }], payment: { method: 'card', token: 'tok_ok' } },
          })
        ).id,
      );
      await new Promise((r) => setTimeout(r, Math.max(0, 1000 / rate - (Date.now() - t0))));
      if (i % 50 === 0) process.stderr.write(`\rplaced ${i + 1}/${count}`);
    }
    process.stderr.write(`\rplaced ${count}/${count}, waiting for the last payments\n`);
    let last = '';
    for (let i = 0; i < 200; i++) {
      last = (await api.ok(endpoints.getOrder, { token, params: { id: ids[ids.length - 1]! } })).status;
      if (last === 'paid') break;
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await engine.kill('SIGTERM');
  }
  const db = values.embedded
    ? await openPglite({ dataDir })
    : (() => {
        const p = new pg.Pool({ connectionString: url.toString() });
        return { query: async (t: string) => (await p.query(t)).rows, close: () => p.end() };
      })();
  const rows = (await db.query(
    "SELECT extract(epoch FROM (updated_at - created_at)) * 1000 AS ms FROM orders WHERE status = 'paid'",
  )) as { ms: number }[];
  await db.close();
  const ms = rows.map((r) => Number(r.ms)).sort((a, b) => a - b);
  process.stdout.write(
    `${values.embedded ? 'PGlite' : 'PostgreSQL'}: ${ms.length}/${count} orders paid; placed -> paid: median ${pct(ms, 50).toFixed(1)} ms, p99 ${pct(ms, 99).toFixed(1)} ms, max ${ms[ms.length - 1]!.toFixed(1)} ms (${rate} orders/s)\n`,
  );
  if (values.embedded) await rm(dataDir, { recursive: true, force: true });
  else {
    const c = new pg.Client({ connectionString: base });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${scratch} WITH (FORCE)`);
    await c.end();
  }
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
