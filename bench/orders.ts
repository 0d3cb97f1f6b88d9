// How many orders per second one Engine Room process places against PostgreSQL, with N concurrent
// clients, on distinct SKUs and on one hot SKU. A benchmark, not a test: it asserts nothing.
//
//   npm run build && node dist/bench/orders.js [--seconds 10] [--clients 32] [--database-url postgres://...]
//
// It creates a scratch database next to the given one, starts `engine-room start` on it as a child
// process, drives it over HTTP from this process, and drops the database afterwards.
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { once } from 'node:events';
import pg from 'pg';
import { createClient, endpoints, fetchTransport } from '../src/client.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    clients: { type: 'string', default: '32' },
    'database-url': { type: 'string', default: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  process.stdout.write('usage: node dist/bench/orders.js [--seconds 10] [--clients 32] [--database-url URL]\n');
  process.exit(0);
}
const seconds = Number(values.seconds);
const clients = Number(values.clients);
const baseUrl = values['database-url']!;
const dbName = `er_bench_${Date.now().toString(36)}`;
const port = 3900 + Math.floor(Math.random() * 90);
const adminEmail = 'bench-admin@example.com';
const adminPassword = 'bench-admin-password';

function urlFor(database: string): string {
  const u = new URL(baseUrl);
  u.pathname = '/' + database;
  return u.toString();
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: baseUrl });
  await c.connect();
  try { return await fn(c); } finally { await c.end(); }
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main() {
  await admin((c) => c.query(`CREATE DATABASE ${dbName}`));
  const server = spawn(process.execPath, ['dist/src/cli.js', 'start'], {
    env: { ...process.env, DATABASE_URL: urlFor(dbName), PORT: String(port), LOG_LEVEL: 'warn', ADMIN_EMAIL: adminEmail, ADMIN_PASSWORD: adminPassword, DATABASE_POOL_SIZE: '20' },
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  let banner = '';
  server.stderr!.on('data', (d: Buffer) => { banner += d.toString(); });
  try {
    for (let i = 0; !banner.includes('listening on'); i++) {
      if (i > 300 || server.exitCode !== null) throw new Error('server did not start:\n' + banner);
      await new Promise((r) => setTimeout(r, 100));
    }
    const api = createClient(fetchTransport(`http://127.0.0.1:${port}`));
    const { token: adminToken } = await api.ok(endpoints.login, { body: { email: adminEmail, password: adminPassword } });
    const skus = Array.from({ length: Math.min(99, clients * 2) }, (_, i) => `BENCH-${i}`);
    await api.ok(endpoints.createProduct, { token: adminToken, body: { name: 'Bench', variants: [...skus, 'HOT'].map((sku) => ({ sku, price: { amount: 1000, currency: 'EUR' }, stock: 10_000_000 })) } });
    const buyers = [];
    for (let i = 0; i < clients; i++) {
      buyers.push((await api.ok(endpoints.signup, { body: { email: `bench${i}@example.com`, password: 'bench password 123', name: `Buyer ${i}` } })).token);
    }
    // Plan against current statistics, now that there is data (an ANALYZE of empty tables makes
    // foreign-key checks plan as sequential scans).
    await admin(async () => { const c = new pg.Client({ connectionString: urlFor(dbName) }); await c.connect(); await c.query('ANALYZE'); await c.end(); });

    process.stdout.write(`\n${clients} clients, ${seconds} s per scenario, one API process on PostgreSQL\n\n`);
    process.stdout.write('scenario        orders/s   p50 ms   p95 ms   p99 ms   errors\n');
    for (const scenario of ['distinct SKUs', 'one hot SKU'] as const) {
      const latencies: number[] = [];
      let errors = 0;
      let n = 0;
      const end = Date.now() + seconds * 1000;
      await Promise.all(buyers.map(async (token, c) => {
        while (Date.now() < end) {
          const sku = scenario === 'one hot SKU' ? 'HOT' : skus[(c * 2 + (n % 2)) % skus.length]!;
          const t0 = performance.now();
          const res = await api.call(endpoints.placeOrder, { token, idempotencyKey: `${scenario}-${c}-${n++}`, body: { lines: [{ sku, quantity: 1 }], payment: { method: 'card', token: 'tok_ok' } } });
          latencies.push(performance.now() - t0);
          if (res.status !== 201) errors++;
        }
      }));
      latencies.sort((a, b) => a - b);
      const ok = latencies.length - errors;
      process.stdout.write(`${scenario.padEnd(14)} ${(ok / seconds).toFixed(0).padStart(9)} ${percentile(latencies, 50).toFixed(1).padStart(8)} ${percentile(latencies, 95).toFixed(1).padStart(8)} ${percentile(latencies, 99).toFixed(1).padStart(8)} ${String(errors).padStart(8)}\n`);
    }
  } finally {
    server.kill('SIGTERM');
    await once(server, 'exit');
    await admin((c) => c.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`));
  }
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
