// npm run bench:lists: the console's lists at size. Seeds a PostgreSQL scratch database with
// `engine-room seed --orders N --customers M`, starts `engine-room start` on it (workers off), and
// asks every list the console's pages use (orders, catalog, stock, customers, keys and staff,
// support, webhooks, jobs), with each filter, R times;
// reports the server's own time for each (its Server-Timing header: handler and serialization, no
// network), median and p95. Then it prints the query plan of each list's statements (EXPLAIN
// ANALYZE of the SQL the repo functions send, caught by a stand-in database) and fails any that
// scans a large table sequentially. Target (docs/PERFORMANCE.md): every list under 100 ms.
//
//   npm run bench:lists -- [--orders 100000] [--customers 10000] [--requests 30]
//                          [--database-url URL] [--reuse URL] [--keep] [--plans]
//
// --reuse URL measures a database seeded before (no seeding, not dropped); --keep keeps the
// scratch database; --plans prints every plan in full, not only the scans that fail.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createClient, endpoints, fetchTransport } from '../src/client.ts';
import { packageRoot } from '../src/platform/paths.ts';
import type { Queryable } from '../src/platform/db.ts';
import * as ordersRepo from '../src/modules/orders/repo.ts';
import * as catalogRepo from '../src/modules/catalog/repo.ts';
import { listMovements, listStockLevels, movementsOfOrder } from '../src/modules/catalog/inventory.ts';
import { entriesOfOrder } from '../src/modules/ledger/ledger.ts';
import { paymentsOfOrder, refundsOfPayments } from '../src/modules/payments/repo.ts';
import { createScratch, defaultDatabaseUrl, freePort, startEngineProcess, type Scratch } from './lib/engine.ts';
import { loadAverage } from './lib/proc.ts';
import { percentiles, table } from './lib/stats.ts';

const { values } = parseArgs({
  options: {
    orders: { type: 'string', default: '100000' },
    customers: { type: 'string', default: '10000' },
    requests: { type: 'string', default: '30' },
    'database-url': { type: 'string', default: process.env.TEST_DATABASE_URL ?? defaultDatabaseUrl },
    reuse: { type: 'string' },
    keep: { type: 'boolean', default: false },
    plans: { type: 'boolean', default: false },
  },
});
const requests = Number(values.requests);
const admin = { email: 'bench-lists-admin@example.com', password: 'bench-lists-admin-password' };
/** Tables that grow with the orders: a sequential scan of one of them (past 10,000 rows) is a failure. */
const largeTables = new Set([
  'orders',
  'order_lines',
  'order_status_changes',
  'payments',
  'refunds',
  'ledger_transactions',
  'ledger_entries',
  'stock_movements',
  'sandbox_charges',
  'users',
  'events',
]);

let scratch: Scratch | undefined;
let url: string;
if (values.reuse) url = values.reuse;
else {
  scratch = await createScratch(values['database-url'], 'lists');
  url = scratch.url;
  process.stderr.write(`bench: scratch database ${scratch.name}\n`);
  const seeded = spawnSync(
    process.execPath,
    [join(packageRoot, 'src', 'cli.ts'), 'seed', '--orders', values.orders, '--customers', values.customers],
    {
      env: {
        PATH: process.env.PATH ?? '',
        DATABASE_URL: url,
        LOG_LEVEL: 'warn',
        ADMIN_EMAIL: admin.email,
        ADMIN_PASSWORD: admin.password,
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  if (seeded.status !== 0) throw new Error('the seed failed');
}

const engine = startEngineProcess({
  role: 'api',
  label: 'api',
  port: await freePort(),
  env: { DATABASE_URL: url, WORKERS: 'off', ADMIN_EMAIL: admin.email, ADMIN_PASSWORD: admin.password },
});
const db = new pg.Client({ connectionString: url });
let failed = false;
try {
  await engine.ready;
  await db.connect();
  const api = createClient(fetchTransport(engine.baseUrl!));
  const token = (await api.ok(endpoints.login, { body: admin })).token;

  // What to ask for: a customer with orders, an order, a busy SKU, a week six months ago.
  const [sample] = (
    await db.query<{ email: string; order_id: string; sku: string }>(
      `SELECT u.email, o.id AS order_id, l.sku FROM orders o JOIN users u ON u.id = o.customer_id JOIN order_lines l ON l.order_id = o.id
      WHERE o.status = 'cancelled' ORDER BY o.id DESC LIMIT 1 OFFSET 100`,
    )
  ).rows;
  if (!sample) throw new Error('the database has no cancelled order of a customer: seed it first');
  const [{ n: orderCount }] = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM orders')).rows as [
    { n: number },
  ];
  const weekFrom = new Date(Date.now() - 182 * 86_400_000);
  const weekTo = new Date(weekFrom.getTime() + 7 * 86_400_000);
  const monthFrom = new Date(Date.now() - 30 * 86_400_000);
  const page2 = (await api.ok(endpoints.listOrders, { token, query: { limit: 25 } })).nextCursor!;
  const headers = { authorization: `Bearer ${token}` };
  const [{ id: sampleCustomerId }] = (
    await db.query<{ id: string }>('SELECT id FROM users WHERE lower(email) = lower($1)', [sample.email])
  ).rows as [{ id: string }];

  const lists: { name: string; path: string }[] = [
    { name: 'orders, newest first', path: '/v1/orders?limit=25' },
    { name: 'orders, page 2 (cursor)', path: `/v1/orders?limit=25&cursor=${page2}` },
    { name: 'orders by status (payment_failed)', path: '/v1/orders?limit=25&status=payment_failed' },
    { name: 'orders by customer email', path: `/v1/orders?limit=25&customerEmail=${encodeURIComponent(sample.email)}` },
    {
      name: 'orders in a week 6 months ago',
      path: `/v1/orders?limit=25&createdFrom=${weekFrom.toISOString()}&createdTo=${weekTo.toISOString()}`,
    },
    {
      name: 'orders since 30 days, cancelled',
      path: `/v1/orders?limit=25&status=cancelled&createdFrom=${monthFrom.toISOString()}`,
    },
    { name: 'orders by id', path: `/v1/orders?limit=25&id=${sample.order_id}` },
    { name: 'order page: order', path: `/v1/orders/${sample.order_id}` },
    { name: 'order page: history', path: `/v1/orders/${sample.order_id}/history` },
    { name: 'order page: payments', path: `/v1/orders/${sample.order_id}/payments` },
    { name: 'order page: ledger entries', path: `/v1/orders/${sample.order_id}/ledger-entries` },
    { name: 'order page: stock movements', path: `/v1/orders/${sample.order_id}/stock-movements` },
    { name: 'products (with inactive)', path: '/v1/products?limit=20&includeInactive=true' },
    { name: 'stock per SKU', path: '/v1/inventory?limit=50' },
    { name: 'movements of a SKU', path: `/v1/inventory/${encodeURIComponent(sample.sku)}/movements?limit=25` },
    // The other pages' lists: customers, keys and staff, support, webhooks, jobs.
    { name: 'customers, newest first', path: '/v1/users?limit=25' },
    { name: 'customers by email prefix', path: `/v1/users?limit=25&q=${encodeURIComponent(sample.email.slice(0, 8))}` },
    { name: 'staff and admins', path: '/v1/users?limit=25&staff=true' },
    { name: 'a customer: account', path: `/v1/users/${sampleCustomerId}` },
    { name: 'a customer: sessions', path: `/v1/users/${sampleCustomerId}/sessions` },
    { name: 'a customer: orders', path: `/v1/orders?limit=25&customerId=${sampleCustomerId}` },
    { name: 'a customer: conversations', path: `/v1/conversations?limit=25&customerId=${sampleCustomerId}` },
    { name: 'API keys', path: '/v1/api-keys?limit=25' },
    { name: 'support inbox: unread', path: '/v1/conversations?limit=25&unread=true' },
    { name: 'support inbox: all', path: '/v1/conversations?limit=25' },
    { name: 'webhook endpoints', path: '/v1/webhook-endpoints?limit=25' },
    { name: 'jobs of a queue (completed)', path: '/v1/admin/queues/payments.charge/jobs?limit=25&state=completed' },
    { name: 'dead letters', path: '/v1/admin/jobs?limit=25' },
  ];

  const rows: string[][] = [['list', 'server p50', 'server p95', 'wall p50', 'rows']];
  const results: { name: string; p50: number; p95: number }[] = [];
  for (const list of lists) {
    const server: number[] = [];
    const wall: number[] = [];
    let count = 0;
    for (let i = 0; i < requests + 3; i++) {
      const started = performance.now();
      const res = await fetch(engine.baseUrl + list.path, { headers });
      const body = (await res.json()) as { data?: unknown[] };
      const took = performance.now() - started;
      if (!res.ok) throw new Error(`${list.path}: ${res.status} ${JSON.stringify(body)}`);
      const dur = Number(/dur=([\d.]+)/.exec(res.headers.get('server-timing') ?? '')?.[1]);
      if (i < 3) continue; // warm-up: connections, plans, caches
      server.push(dur);
      wall.push(took);
      count = Array.isArray(body.data) ? body.data.length : 1;
    }
    const s = percentiles(server);
    const w = percentiles(wall);
    results.push({ name: list.name, p50: s.p50, p95: s.p95 });
    rows.push([list.name, `${s.p50.toFixed(1)} ms`, `${s.p95.toFixed(1)} ms`, `${w.p50.toFixed(1)} ms`, String(count)]);
  }
  console.log(
    `\nLists at ${orderCount} orders on PostgreSQL, ${requests} requests each, one at a time (load average ${loadAverage()}):\n`,
  );
  console.log(table(rows));
  const slow = results.filter((r) => r.p95 >= 100);
  if (slow.length > 0) {
    failed = true;
    console.log(`\nOver 100 ms at p95: ${slow.map((r) => r.name).join(', ')}`);
  }

  // The plans: each repo function the lists call, its SQL run under EXPLAIN ANALYZE.
  const plans: { name: string; sql: string; plan: PlanNode }[] = [];
  let current = '';
  const explaining: Queryable = {
    async query<T>(sql: string, params?: readonly unknown[]): Promise<T[]> {
      const result = await db.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
        `EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`,
        params as unknown[],
      );
      plans.push({ name: current, sql, plan: result.rows[0]!['QUERY PLAN'][0].Plan });
      return [];
    },
    async exec() {
      throw new Error('not in a plan');
    },
  };
  const customerId = sampleCustomerId;
  const [{ id: pageTwoAfter }] = (
    await db.query<{ id: string }>('SELECT id FROM orders ORDER BY id DESC OFFSET 24 LIMIT 1')
  ).rows as [{ id: string }];
  const none = { customerId: null, status: null, id: null, createdFrom: null, createdTo: null, after: null, limit: 25 };
  const explain = async (name: string, run: () => Promise<unknown>) => {
    current = name;
    await run();
  };
  await explain('orders, newest first', () => ordersRepo.listOrders(explaining, none));
  await explain('orders, page 2', () => ordersRepo.listOrders(explaining, { ...none, after: pageTwoAfter }));
  await explain('orders by status', () => ordersRepo.listOrders(explaining, { ...none, status: 'payment_failed' }));
  await explain('orders by customer', () => ordersRepo.listOrders(explaining, { ...none, customerId }));
  await explain('orders in a week', () =>
    ordersRepo.listOrders(explaining, { ...none, createdFrom: weekFrom, createdTo: weekTo }),
  );
  await explain('orders since 30 days, cancelled', () =>
    ordersRepo.listOrders(explaining, { ...none, status: 'cancelled', createdFrom: monthFrom }),
  );
  await explain('orders by id', () => ordersRepo.listOrders(explaining, { ...none, id: sample.order_id }));
  const pageIds = (await db.query<{ id: string }>('SELECT id FROM orders ORDER BY id DESC LIMIT 25')).rows.map(
    (r) => r.id,
  );
  await explain('lines of a page of orders', () => ordersRepo.linesOf(explaining, pageIds));
  await explain('order history', () => ordersRepo.statusChangesOf(explaining, sample.order_id));
  await explain('order payments', () => paymentsOfOrder(explaining, sample.order_id));
  const paymentIds = (
    await db.query<{ id: string }>('SELECT id FROM payments WHERE order_id = $1', [sample.order_id])
  ).rows.map((r) => r.id);
  await explain('order refunds', () => refundsOfPayments(explaining, paymentIds));
  await explain('order ledger entries', () => entriesOfOrder(explaining, sample.order_id));
  await explain('order stock movements', () => movementsOfOrder(explaining, sample.order_id));
  await explain('products', () =>
    catalogRepo.listProducts(explaining, { after: null, limit: 20, includeInactive: true }),
  );
  const productIds = (await db.query<{ id: string }>('SELECT id FROM products ORDER BY id DESC LIMIT 20')).rows.map(
    (r) => r.id,
  );
  await explain('variants of a page of products', () => catalogRepo.variantsOf(explaining, productIds));
  await explain('stock per SKU', () => listStockLevels(explaining, { after: null, limit: 50 }));
  await explain('movements of a SKU', () => listMovements(explaining, sample.sku, null, 25));

  // A table still small (say, no refund yet) is best read whole: only a large one's scan fails.
  const sizes = new Map(
    (
      await db.query<{ relname: string; rows: number }>(
        `SELECT relname, greatest(reltuples, 0)::bigint::int AS rows FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace`,
      )
    ).rows.map((r) => [r.relname, r.rows]),
  );
  const large = (table: string | undefined) => largeTables.has(table ?? '') && (sizes.get(table!) ?? 0) > 10_000;
  const planRows: string[][] = [['statement', 'plan (outermost first)', 'ms', 'verdict']];
  for (const p of plans) {
    const nodes = flatten(p.plan);
    const scans = nodes.filter((n) => n['Node Type'] === 'Seq Scan' && large(n['Relation Name']));
    if (scans.length > 0) failed = true;
    planRows.push([
      p.name,
      nodes
        .map(
          (n) =>
            `${n['Node Type']}${n['Index Name'] ? ` ${n['Index Name']}` : n['Relation Name'] ? ` ${n['Relation Name']}` : ''}`,
        )
        .join(' > ')
        .slice(0, 110),
      (p.plan['Actual Total Time'] ?? 0).toFixed(2),
      scans.length > 0 ? `SEQ SCAN of ${scans.map((s) => s['Relation Name']).join(', ')}` : 'ok',
    ]);
    if (values.plans) console.log(`\n${p.name}:\n${p.sql}\n${JSON.stringify(p.plan, null, 1)}`);
  }
  console.log('\nQuery plans (EXPLAIN ANALYZE; a sequential scan of a table that grows with the orders fails):\n');
  console.log(table(planRows, 'left'));
  console.log(
    failed ? '\nFAILED: see above' : '\nEvery list under 100 ms at p95, and no sequential scan of a large table.',
  );
} finally {
  await db.end().catch(() => {});
  await engine.kill('SIGTERM');
  if (scratch && !values.keep) await scratch.drop();
  else if (scratch) process.stderr.write(`bench: kept ${scratch.url}\n`);
}
process.exitCode = failed ? 1 : 0;

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Total Time'?: number;
  Plans?: PlanNode[];
}

function flatten(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(flatten)];
}
