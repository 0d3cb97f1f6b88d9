// Real concurrency: many requests in flight at once through the real app, against a pool of real
// PostgreSQL connections (on PGlite the same requests are serialized by its single connection, and
// the same invariants must hold).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine, startTestEnv, type TestEnv } from './support/app.ts';
import { postgresUrl } from './support/database.ts';
import { endpoints } from '../src/client.ts';
import { assertStockExplained } from './support/stock.ts';

const card = { method: 'card' as const, token: 'tok_ok' };

forEachEngine('orders under concurrency', 'parity', (env) => {
  it('200 concurrent buyers of a SKU with stock 10 give exactly 10 orders and 190 out_of_stock', async () => {
    const { client, adminToken, customers, database } = env();
    await env().product([{ sku: 'HOT', stock: 10 }]);
    const buyers = await customers(200);
    const results = await Promise.all(
      buyers.map((b, i) =>
        client.call(endpoints.placeOrder, {
          token: b.token,
          idempotencyKey: `hot-${i}`,
          body: { lines: [{ sku: 'HOT', quantity: 1 }], payment: card },
        }),
      ),
    );
    const statuses = results.map((r) => r.status);
    assert.equal(statuses.filter((s) => s === 201).length, 10);
    assert.equal(statuses.filter((s) => s === 409).length, 190);
    assert.ok(
      results.filter((r) => r.status === 409).every((r) => (r.body as { code: string }).code === 'out_of_stock'),
    );
    assert.deepEqual(await client.ok(endpoints.getStock, { token: adminToken, params: { sku: 'HOT' } }), {
      sku: 'HOT',
      onHand: 10,
      reserved: 10,
      available: 0,
    });
    const [orders] = await database.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM order_lines WHERE sku = 'HOT'",
    );
    assert.equal(orders!.n, 10);
    // Each answer was stored with its key, the 409s too (most of them lost the race only at the
    // reservation, the last step, after the 201 had been written and was undone): a resend of any
    // request answers what it answered first and changes nothing.
    const again = await Promise.all(
      buyers.map((b, i) =>
        client.call(endpoints.placeOrder, {
          token: b.token,
          idempotencyKey: `hot-${i}`,
          body: { lines: [{ sku: 'HOT', quantity: 1 }], payment: card },
        }),
      ),
    );
    assert.deepEqual(
      again.map((r) => [r.status, r.body]),
      results.map((r) => [r.status, r.body]),
    );
    const [after] = await database.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM order_lines WHERE sku = 'HOT'",
    );
    assert.equal(after!.n, 10);
    await assertStockExplained(database.db);
  });

  it('orders for (A, B) and (B, A) fired concurrently in a loop never fail with a deadlock', async () => {
    const { client, customers, database } = env();
    await env().product([
      { sku: 'CROSS-A', stock: 100_000 },
      { sku: 'CROSS-B', stock: 100_000 },
    ]);
    const [buyer] = await customers(1);
    let n = 0;
    for (let round = 0; round < 10; round++) {
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          client.call(endpoints.placeOrder, {
            token: buyer!.token,
            idempotencyKey: `cross-${n++}`,
            body: {
              lines:
                i % 2 === 0
                  ? [
                      { sku: 'CROSS-A', quantity: 1 },
                      { sku: 'CROSS-B', quantity: 1 },
                    ]
                  : [
                      { sku: 'CROSS-B', quantity: 1 },
                      { sku: 'CROSS-A', quantity: 1 },
                    ],
              payment: card,
            },
          }),
        ),
      );
      assert.deepEqual(
        results.filter((r) => r.status !== 201).map((r) => r.body),
        [],
      );
    }
    const levels = await database.db.query<{ sku: string; reserved: number }>(
      "SELECT sku, reserved FROM stock_levels WHERE sku LIKE 'CROSS-%' ORDER BY sku",
    );
    assert.deepEqual(levels, [
      { sku: 'CROSS-A', reserved: 200 },
      { sku: 'CROSS-B', reserved: 200 },
    ]);
    await assertStockExplained(database.db);
  });

  it('a multi-line order that fails on its last line leaves no reservation behind, while others buy the same SKUs', async () => {
    const { client, adminToken, customers, database } = env();
    await env().product([
      { sku: 'ML-1', stock: 1000 },
      { sku: 'ML-2', stock: 1000 },
      { sku: 'ML-LAST', stock: 0 },
    ]);
    const buyers = await customers(20);
    const results = await Promise.all(
      buyers.flatMap((b, i) => [
        client.call(endpoints.placeOrder, {
          token: b.token,
          idempotencyKey: `ml-fail-${i}`,
          body: {
            lines: [
              { sku: 'ML-1', quantity: 2 },
              { sku: 'ML-2', quantity: 3 },
              { sku: 'ML-LAST', quantity: 1 },
            ],
            payment: card,
          },
        }),
        client.call(endpoints.placeOrder, {
          token: b.token,
          idempotencyKey: `ml-ok-${i}`,
          body: {
            lines: [
              { sku: 'ML-1', quantity: 1 },
              { sku: 'ML-2', quantity: 1 },
            ],
            payment: card,
          },
        }),
      ]),
    );
    assert.equal(results.filter((r) => r.status === 409).length, 20);
    assert.equal(results.filter((r) => r.status === 201).length, 20);
    assert.equal((await client.ok(endpoints.getStock, { token: adminToken, params: { sku: 'ML-1' } })).reserved, 20);
    assert.equal((await client.ok(endpoints.getStock, { token: adminToken, params: { sku: 'ML-2' } })).reserved, 20);
    await assertStockExplained(database.db);
  });

  it('concurrent cancels and orders on one SKU keep the books: every unit is reserved once or released once', async () => {
    const { client, adminToken, customers, database } = env();
    await env().product([{ sku: 'CHURN', stock: 30 }]);
    const buyers = await customers(30);
    const placed = await Promise.all(
      buyers.map((b, i) =>
        client.ok(endpoints.placeOrder, {
          token: b.token,
          idempotencyKey: `churn-${i}`,
          body: { lines: [{ sku: 'CHURN', quantity: 1 }], payment: card },
        }),
      ),
    );
    // Each order cancelled twice at once with different keys, while new buyers try to take the freed units.
    const late = await customers(30);
    const outcomes = await Promise.all([
      ...placed.flatMap((o, i) =>
        [0, 1].map((k) =>
          client.call(endpoints.cancelOrder, {
            token: buyers[i]!.token,
            idempotencyKey: `cancel-${i}-${k}`,
            params: { id: o.id },
          }),
        ),
      ),
      ...late.map((b, i) =>
        client.call(endpoints.placeOrder, {
          token: b.token,
          idempotencyKey: `late-${i}`,
          body: { lines: [{ sku: 'CHURN', quantity: 1 }], payment: card },
        }),
      ),
    ]);
    const cancels = outcomes.slice(0, 60);
    assert.equal(cancels.filter((r) => r.status === 200).length, 30, 'each order is cancelled exactly once');
    assert.equal(cancels.filter((r) => r.status === 409).length, 30);
    const lateOk = outcomes.slice(60).filter((r) => r.status === 201).length;
    const level = await client.ok(endpoints.getStock, { token: adminToken, params: { sku: 'CHURN' } });
    assert.equal(level.reserved, lateOk);
    await assertStockExplained(database.db);
  });
});

// The suites above place one order transaction at a time (ORDER_BATCH_CONCURRENCY defaults to 1), so
// the stock row locks never meet a second placing transaction. Here eight run at once on a pool of
// real PostgreSQL connections (PGlite, one connection, cannot run two).
describe(
  'orders placed by concurrent transactions [postgres]',
  { skip: postgresUrl ? false : 'needs TEST_DATABASE_URL' },
  () => {
    let env: TestEnv;
    before(async () => {
      env = await startTestEnv('postgres', { ORDER_BATCH_CONCURRENCY: '8' });
    });
    after(async () => {
      await env?.close();
    });

    it('many buyers of a few units across several SKUs, multi-line orders in both SKU orders: no oversell, every acknowledged order kept', async () => {
      const { client, customers, database } = env;
      const stock: Record<string, number> = { 'OS-A': 7, 'OS-B': 5, 'OS-C': 6, 'OS-D': 4 };
      await env.product(Object.entries(stock).map(([sku, n]) => ({ sku, stock: n })));
      // Each shape names its SKUs in a different order; some take two units of one.
      const shapes = [
        [
          ['OS-A', 1],
          ['OS-B', 1],
        ],
        [
          ['OS-B', 1],
          ['OS-A', 1],
        ],
        [
          ['OS-C', 2],
          ['OS-D', 1],
        ],
        [
          ['OS-D', 1],
          ['OS-C', 1],
          ['OS-A', 1],
        ],
        [['OS-B', 2]],
        [
          ['OS-D', 1],
          ['OS-B', 1],
        ],
      ] as const;
      const buyers = await customers(240);
      const requests = buyers.map((b, i) => ({
        token: b.token,
        lines: shapes[i % shapes.length]!.map(([sku, quantity]) => ({ sku, quantity })),
      }));
      const results = await Promise.all(
        requests.map((r, i) =>
          client.call(endpoints.placeOrder, {
            token: r.token,
            idempotencyKey: `oversell-${i}`,
            body: { lines: r.lines, payment: card },
          }),
        ),
      );

      // Every answer is an order or a clean refusal: a lost race is never a fault.
      assert.deepEqual(
        results
          .filter(
            (r) => r.status !== 201 && !(r.status === 409 && (r.body as { code: string }).code === 'out_of_stock'),
          )
          .map((r) => [r.status, r.body]),
        [],
      );
      const placed = results.flatMap((r) => (r.ok ? [r.body] : []));
      assert.ok(placed.length > 0);

      // Every acknowledged order is there, as answered, with its payment; and nothing else is.
      const rows = await database.db.query<{ id: string; status: string; lines: string; payments: number }>(
        `SELECT o.id, o.status, (SELECT string_agg(sku || ':' || quantity, ',' ORDER BY line_no) FROM order_lines WHERE order_id = o.id) AS lines,
              (SELECT count(*)::int FROM payments WHERE order_id = o.id) AS payments
         FROM orders o WHERE o.id IN (SELECT order_id FROM order_lines WHERE sku LIKE 'OS-%') ORDER BY o.id`,
      );
      assert.deepEqual(
        rows,
        placed
          .map((o) => ({
            id: o.id,
            status: 'pending_payment',
            lines: o.lines.map((l) => `${l.sku}:${l.quantity}`).join(','),
            payments: 1,
          }))
          .sort((a, b) => (a.id < b.id ? -1 : 1)),
      );

      // No SKU sold more than it had; what is reserved is exactly what the acknowledged orders took.
      const levels = await database.db.query<{ sku: string; on_hand: number; reserved: number }>(
        "SELECT sku, on_hand, reserved FROM stock_levels WHERE sku LIKE 'OS-%' ORDER BY sku",
      );
      for (const level of levels) {
        const taken = placed
          .flatMap((o) => o.lines)
          .filter((l) => l.sku === level.sku)
          .reduce((sum, l) => sum + l.quantity, 0);
        assert.deepEqual(level, { sku: level.sku, on_hand: stock[level.sku], reserved: taken });
        assert.ok(taken <= stock[level.sku]!, `${level.sku} oversold`);
      }
      assert.ok(
        levels.some((l) => l.reserved === l.on_hand),
        'the buyers ran some SKU out: the race was real',
      );
      await assertStockExplained(database.db);
    });
  },
);
