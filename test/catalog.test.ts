import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { adminEmail, forEachEngine, startTestEnv, type TestEnv } from './support/app.ts';
import { postgresUrl } from './support/database.ts';
import { waitFor } from './support/wait.ts';
import type { Tx } from '../src/platform/db.ts';
import { reserveForOrders, returnSoldStock, settleReservations } from '../src/modules/catalog/inventory.ts';
import { endpoints } from '../src/client.ts';
import { assertStockExplained } from './support/stock.ts';
import { maxOnHand } from '../src/modules/catalog/schemas.ts';
import { chargeOnce } from './support/charge.ts';
import { createSandboxProvider } from '../src/modules/payments/providers/sandbox.ts';

forEachEngine('catalog and inventory', 'parity', (env) => {
  it('lets staff create a product with variants; anyone can read it with what is available', async () => {
    const { client, adminToken } = env();
    const created = await client.call(endpoints.createProduct, {
      token: adminToken,
      body: {
        name: 'T-shirt',
        description: 'Cotton',
        variants: [
          { sku: 'TEE-S', name: 'Small', price: { amount: 1999, currency: 'EUR' }, stock: 5 },
          { sku: 'TEE-M', price: { amount: 2199, currency: 'EUR' }, stock: 0 },
        ],
      },
    });
    assert.equal(created.status, 201);
    assert.ok(created.ok);
    assert.match(created.body.id, /^prd_/);
    assert.deepEqual(
      created.body.variants.map((v) => [v.sku, v.available, v.price.amount]),
      [
        ['TEE-S', 5, 1999],
        ['TEE-M', 0, 2199],
      ],
    );
    assert.match(created.body.variants[0]!.id, /^var_/);
    const anonymous = await client.ok(endpoints.getProduct, { params: { id: created.body.id } });
    assert.deepEqual(anonymous, created.body);
    const list = await client.ok(endpoints.listProducts, {});
    assert.ok(list.data.some((p) => p.id === created.body.id));
  });

  it('refuses a SKU that exists with 409 sku_taken, and a SKU twice in one product', async () => {
    const { client, adminToken } = env();
    const again = await client.call(endpoints.createProduct, {
      token: adminToken,
      body: { name: 'Copy', variants: [{ sku: 'TEE-S', price: { amount: 1, currency: 'EUR' }, stock: 1 }] },
    });
    assert.equal(again.status, 409);
    assert.equal(again.body.code, 'sku_taken');
    const twice = await client.call(endpoints.createProduct, {
      token: adminToken,
      body: {
        name: 'Twice',
        variants: [
          { sku: 'NEW-1', price: { amount: 1, currency: 'EUR' }, stock: 1 },
          { sku: 'NEW-1', price: { amount: 1, currency: 'EUR' }, stock: 1 },
        ],
      },
    });
    assert.equal(twice.status, 409);
    assert.equal(twice.body.code, 'sku_taken');
    assert.equal(
      (await client.call(endpoints.getStock, { token: adminToken, params: { sku: 'NEW-1' } })).status,
      404,
      'nothing of the refused product remains',
    );
  });

  it('keeps writes to staff: a customer gets 403, nobody gets 401', async () => {
    const { client, customer } = env();
    const c = await customer();
    const body = { name: 'X', variants: [{ sku: 'X-1', price: { amount: 1, currency: 'EUR' }, stock: 1 }] };
    assert.equal((await client.call(endpoints.createProduct, { token: c.token, body })).status, 403);
    assert.equal((await client.call(endpoints.createProduct, { body })).status, 401);
    assert.equal((await client.call(endpoints.getStock, { token: c.token, params: { sku: 'TEE-S' } })).status, 403);
  });

  it('validates money: integer minor units and an ISO currency code', async () => {
    const { client, adminToken } = env();
    for (const price of [
      { amount: 19.99, currency: 'EUR' },
      { amount: 100, currency: 'euro' },
      { amount: -1, currency: 'EUR' },
    ]) {
      const res = await client.call(endpoints.createProduct, {
        token: adminToken,
        body: { name: 'Bad', variants: [{ sku: 'BAD-1', price, stock: 1 }] },
      });
      assert.equal(res.status, 400, JSON.stringify(price));
      assert.equal(res.body.code, 'validation_failed');
    }
  });

  it('hides an inactive product from customers (404) but not from staff; PATCH changes name and prices', async () => {
    const { client, adminToken, customer } = env();
    const p = await env().product([{ sku: 'HAT-1', stock: 3, amount: 500 }], 'Hat');
    const patched = await client.ok(endpoints.updateProduct, {
      token: adminToken,
      params: { id: p.id },
      body: { name: 'Warm hat', active: false, variants: [{ sku: 'HAT-1', price: { amount: 750, currency: 'EUR' } }] },
    });
    assert.equal(patched.name, 'Warm hat');
    assert.equal(patched.active, false);
    assert.equal(patched.variants[0]!.price.amount, 750);
    const c = await customer();
    assert.equal((await client.call(endpoints.getProduct, { token: c.token, params: { id: p.id } })).status, 404);
    assert.equal((await client.call(endpoints.getProduct, { params: { id: p.id } })).status, 404);
    assert.equal((await client.call(endpoints.getProduct, { token: adminToken, params: { id: p.id } })).status, 200);
    const customerList = await client.ok(endpoints.listProducts, { token: c.token, query: { includeInactive: true } });
    assert.ok(!customerList.data.some((x) => x.id === p.id), 'includeInactive is for staff only');
    const staffList = await client.ok(endpoints.listProducts, { token: adminToken, query: { includeInactive: true } });
    assert.ok(staffList.data.some((x) => x.id === p.id));
    const foreign = await client.call(endpoints.updateProduct, {
      token: adminToken,
      params: { id: p.id },
      body: { variants: [{ sku: 'TEE-S', price: { amount: 1, currency: 'EUR' } }] },
    });
    assert.equal(foreign.status, 422);
    assert.equal(foreign.body.code, 'unknown_sku');
    assert.equal(
      (
        await client.call(endpoints.updateProduct, {
          token: adminToken,
          params: { id: 'prd_missing' },
          body: { name: 'x' },
        })
      ).status,
      404,
    );
  });

  it('adjusts stock with a reason, refuses to take onHand below reserved, and explains every level by its movements', async () => {
    const { client, adminToken, database } = env();
    const up = await client.call(endpoints.adjustStock, {
      token: adminToken,
      idempotencyKey: 'adj-1',
      params: { sku: 'TEE-M' },
      body: { delta: 7, reason: 'delivery' },
    });
    assert.equal(up.status, 201);
    assert.deepEqual(up.body, { sku: 'TEE-M', onHand: 7, reserved: 0, available: 7 });
    const c = await env().customer();
    await client.ok(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: 'order-adj',
      body: { lines: [{ sku: 'TEE-M', quantity: 5 }], payment: { method: 'card', token: 'tok_ok' } },
    });
    const down = await client.call(endpoints.adjustStock, {
      token: adminToken,
      idempotencyKey: 'adj-2',
      params: { sku: 'TEE-M' },
      body: { delta: -3, reason: 'damaged' },
    });
    assert.equal(down.status, 409);
    assert.equal(down.body.code, 'insufficient_stock');
    assert.equal(down.body.detail, 'SKU TEE-M has 7 on hand and 5 reserved; cannot remove 3');
    assert.deepEqual(down.body.errors, [{ path: '/delta', message: 'at least -2 allowed' }]);
    const ok = await client.ok(endpoints.adjustStock, {
      token: adminToken,
      idempotencyKey: 'adj-3',
      params: { sku: 'TEE-M' },
      body: { delta: -2, reason: 'damaged' },
    });
    assert.deepEqual(ok, { sku: 'TEE-M', onHand: 5, reserved: 5, available: 0 });
    const level = await client.ok(endpoints.getStock, { token: adminToken, params: { sku: 'TEE-M' } });
    assert.deepEqual(level, ok);
    const history = await client.ok(endpoints.listStockMovements, {
      token: adminToken,
      params: { sku: 'TEE-M' },
      query: { limit: 2 },
    });
    assert.deepEqual(
      history.data.map((m) => [m.kind, m.onHandDelta, m.reservedDelta]),
      [
        ['adjustment', -2, 0],
        ['reservation', 0, 5],
      ],
    );
    const rest = await client.ok(endpoints.listStockMovements, {
      token: adminToken,
      params: { sku: 'TEE-M' },
      query: { cursor: history.nextCursor! },
    });
    assert.deepEqual(
      rest.data.map((m) => m.kind),
      ['adjustment', 'initial'],
    );
    assert.equal(rest.nextCursor, null);
    await assertStockExplained(database.db);
  });

  it('demands an Idempotency-Key on adjustments, and answers 404 for an unknown SKU', async () => {
    const { client, adminToken } = env();
    const missing = await client.call(endpoints.adjustStock, {
      token: adminToken,
      params: { sku: 'TEE-M' },
      body: { delta: 1, reason: 'x' },
    });
    assert.equal(missing.status, 400);
    assert.equal(missing.body.code, 'idempotency_key_required');
    const unknown = await client.call(endpoints.adjustStock, {
      token: adminToken,
      idempotencyKey: 'adj-unknown',
      params: { sku: 'NOPE' },
      body: { delta: 1, reason: 'x' },
    });
    assert.equal(unknown.status, 404);
    const zero = await client.call(endpoints.adjustStock, {
      token: adminToken,
      idempotencyKey: 'adj-zero',
      params: { sku: 'TEE-M' },
      body: { delta: 0, reason: 'x' },
    });
    assert.equal(zero.status, 400);
  });

  it('keeps onHand within its bound: more stock is 400, an adjustment past it 422, and none overflows the column', async () => {
    const { client, adminToken, database } = env();
    const created = await client.call(endpoints.createProduct, {
      token: adminToken,
      body: {
        name: 'Too many',
        variants: [{ sku: 'BULK-X', price: { amount: 1, currency: 'EUR' }, stock: maxOnHand + 1 }],
      },
    });
    assert.equal(created.status, 400);
    await env().product([{ sku: 'BULK', stock: maxOnHand }]);
    const adjust = (n: number, delta: number) =>
      client.call(endpoints.adjustStock, {
        token: adminToken,
        idempotencyKey: `bulk-${n}`,
        params: { sku: 'BULK' },
        body: { delta, reason: 'count' },
      });
    assert.equal((await adjust(1, maxOnHand + 1)).status, 400);
    // The finding: stock of 1e9 plus adjustments of 1e9 ran past 2^31 - 1, a 500 "integer out of range".
    for (const [n, delta] of [
      [2, 1],
      [3, maxOnHand],
      [4, maxOnHand],
    ] as const) {
      const over = await adjust(n, delta);
      assert.equal(over.status, 422, JSON.stringify(over.body));
      assert.equal(over.body.code, 'limit_exceeded');
      assert.deepEqual(over.body.errors, [{ path: '/delta', message: 'at most 0 allowed' }]);
      assert.equal(over.body.detail, `SKU BULK has ${maxOnHand} on hand; at most ${maxOnHand} may be`);
    }
    assert.deepEqual((await adjust(5, -maxOnHand)).body, { sku: 'BULK', onHand: 0, reserved: 0, available: 0 });
    assert.equal((await adjust(6, maxOnHand)).status, 201);
    assert.equal((await adjust(7, 1)).status, 422);
    assert.deepEqual(await client.ok(endpoints.getStock, { token: adminToken, params: { sku: 'BULK' } }), {
      sku: 'BULK',
      onHand: maxOnHand,
      reserved: 0,
      available: maxOnHand,
    });
    await assertStockExplained(database.db);
  });

  it('a change that would still take a stock column past its range answers 422, not 500', async () => {
    const { client, database } = env();
    await env().product([{ sku: 'EDGE', stock: 10 }]);
    const c = await env().customer();
    const order = await client.ok(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: 'edge-order',
      body: { lines: [{ sku: 'EDGE', quantity: 5 }], payment: { method: 'card', token: 'tok_ok' } },
    });
    const [payment] = await database.db.query<{ id: string }>('SELECT id FROM payments WHERE order_id = $1', [
      order.id,
    ]);
    await chargeOnce(database.db, createSandboxProvider(database.db), payment!.id);
    // At the very top of the column (as many cancelled sales could bring it): returning the 5
    // units of the paid order would pass 2^31 - 1.
    await database.db.query(`UPDATE stock_levels SET on_hand = 2147483647 WHERE sku = 'EDGE'`);
    await database.db.query(
      `INSERT INTO stock_movements (sku, kind, on_hand_delta, reserved_delta, reason) VALUES ('EDGE', 'adjustment', 2147483642, 0, 'planted')`,
    );
    const cancel = await client.call(endpoints.cancelOrder, {
      token: c.token,
      idempotencyKey: 'edge-cancel',
      params: { id: order.id },
    });
    assert.equal(cancel.status, 422);
    assert.equal(cancel.body.code, 'limit_exceeded');
    assert.doesNotMatch(JSON.stringify(cancel.body), /integer|out of range/);
    assert.equal(
      (await client.ok(endpoints.getOrder, { token: c.token, params: { id: order.id } })).status,
      'paid',
      'nothing changed',
    );
    await assertStockExplained(database.db);
  });

  it("every movement says why: stock by hand names its reason and who, an order's reservation, sale and return name the order", async () => {
    const { client, adminToken, database } = env();
    await env().product([
      { sku: 'WHY-1', stock: 4 },
      { sku: 'WHY-2', stock: 6 },
    ]);
    await client.ok(endpoints.adjustStock, {
      token: adminToken,
      idempotencyKey: 'why-adj',
      params: { sku: 'WHY-1' },
      body: { delta: 2, reason: 'delivery' },
    });
    const c = await env().customer();
    const order = await client.ok(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: 'why-order',
      body: {
        lines: [
          { sku: 'WHY-2', quantity: 2 },
          { sku: 'WHY-1', quantity: 1 },
        ],
        payment: { method: 'card', token: 'tok_ok' },
      },
    });
    const [payment] = await database.db.query<{ id: string }>('SELECT id FROM payments WHERE order_id = $1', [
      order.id,
    ]);
    await chargeOnce(database.db, createSandboxProvider(database.db), payment!.id);
    await client.ok(endpoints.cancelOrder, { token: c.token, idempotencyKey: 'why-cancel', params: { id: order.id } });

    const byHand = await client.ok(endpoints.listStockMovements, { token: adminToken, params: { sku: 'WHY-1' } });
    assert.deepEqual(
      byHand.data.filter((m) => m.orderId === null).map((m) => [m.kind, m.onHandDelta, m.reservedDelta, m.reason]),
      [
        ['adjustment', 2, 0, 'delivery'],
        ['initial', 4, 0, 'initial stock'],
      ],
    );
    const [admin] = await database.db.query<{ id: string }>('SELECT id FROM users WHERE email = $1', [adminEmail]);
    const actors = await database.db.query<{ actor_id: string | null }>(
      "SELECT actor_id FROM stock_movements WHERE sku = 'WHY-1' AND order_id IS NULL",
    );
    assert.deepEqual(
      actors.map((a) => a.actor_id),
      [admin!.id, admin!.id],
    );

    const moves = await client.ok(endpoints.listOrderStockMovements, { token: adminToken, params: { id: order.id } });
    const line = (m: (typeof moves.data)[number]) => [
      m.kind,
      m.sku,
      m.onHandDelta,
      m.reservedDelta,
      m.orderId,
      m.reason,
    ];
    const sorted = (kind: string, onHandSign: number) =>
      moves.data
        .filter((m) => m.kind === kind && Math.sign(m.onHandDelta) === onHandSign)
        .map(line)
        .sort();
    assert.equal(moves.data.length, 6);
    assert.deepEqual(sorted('reservation', 0), [
      ['reservation', 'WHY-1', 0, 1, order.id, null],
      ['reservation', 'WHY-2', 0, 2, order.id, null],
    ]);
    assert.deepEqual(sorted('sale', -1), [
      ['sale', 'WHY-1', -1, -1, order.id, null],
      ['sale', 'WHY-2', -2, -2, order.id, null],
    ]);
    assert.deepEqual(sorted('sale', 1), [
      ['sale', 'WHY-1', 1, 0, order.id, 'sale reversed: order cancelled'],
      ['sale', 'WHY-2', 2, 0, order.id, 'sale reversed: order cancelled'],
    ]);
    assert.deepEqual(await client.ok(endpoints.getStock, { token: adminToken, params: { sku: 'WHY-2' } }), {
      sku: 'WHY-2',
      onHand: 6,
      reserved: 0,
      available: 6,
    });
    await assertStockExplained(database.db);
  });

  it("reserves a batch of orders by each SKU's total, one movement per order and SKU; a batch that no longer fits is a fault that leaves nothing", async () => {
    const { database } = env();
    await env().product([
      { sku: 'FIT-1', stock: 3 },
      { sku: 'FIT-2', stock: 3 },
    ]);
    const reserved = async () =>
      database.db.query<{ sku: string; reserved: number }>(
        "SELECT sku, reserved FROM stock_levels WHERE sku LIKE 'FIT-%' ORDER BY sku",
      );
    // FIT-1 is asked 4 of its 3 by two orders together: the locked rows were read wrong, a fault.
    await assert.rejects(
      database.db.transaction((tx) =>
        reserveForOrders(tx, [
          { orderId: 'ord_fit_a', sku: 'FIT-1', quantity: 2 },
          { orderId: 'ord_fit_b', sku: 'FIT-1', quantity: 2 },
          { orderId: 'ord_fit_a', sku: 'FIT-2', quantity: 1 },
        ]),
      ),
      /1 SKUs no longer had the stock/,
    );
    assert.deepEqual(await reserved(), [
      { sku: 'FIT-1', reserved: 0 },
      { sku: 'FIT-2', reserved: 0 },
    ]);
    assert.deepEqual(await database.db.query("SELECT 1 FROM stock_movements WHERE order_id LIKE 'ord_fit_%'"), []);

    const fitting = [
      { orderId: 'ord_fit_a', sku: 'FIT-1', quantity: 1 },
      { orderId: 'ord_fit_b', sku: 'FIT-1', quantity: 2 },
      { orderId: 'ord_fit_a', sku: 'FIT-2', quantity: 3 },
    ];
    await database.db.transaction((tx) => reserveForOrders(tx, fitting));
    assert.deepEqual(await reserved(), [
      { sku: 'FIT-1', reserved: 3 },
      { sku: 'FIT-2', reserved: 3 },
    ]);
    const moved = await database.db.query<{ order_id: string; sku: string; reserved_delta: number }>(
      "SELECT order_id, sku, reserved_delta FROM stock_movements WHERE order_id LIKE 'ord_fit_%' ORDER BY order_id, sku",
    );
    assert.deepEqual(moved, [
      { order_id: 'ord_fit_a', sku: 'FIT-1', reserved_delta: 1 },
      { order_id: 'ord_fit_a', sku: 'FIT-2', reserved_delta: 3 },
      { order_id: 'ord_fit_b', sku: 'FIT-1', reserved_delta: 2 },
    ]);
    await database.db.transaction((tx) =>
      settleReservations(
        tx,
        fitting.map((l) => ({ ...l, kind: 'release' as const })),
      ),
    );
    assert.deepEqual(await reserved(), [
      { sku: 'FIT-1', reserved: 0 },
      { sku: 'FIT-2', reserved: 0 },
    ]);
    await assertStockExplained(database.db);
  });

  it('refuses negative stock in the database itself, whatever the code does', async () => {
    const { database } = env();
    await assert.rejects(
      database.db.query("UPDATE stock_levels SET on_hand = -1 WHERE sku = 'TEE-S'"),
      (e: { code?: string }) => e.code === '23514',
    );
    await assert.rejects(
      database.db.query("UPDATE stock_levels SET reserved = on_hand + 1 WHERE sku = 'TEE-S'"),
      (e: { code?: string }) => e.code === '23514',
    );
  });
});

// Two transactions settling the same SKUs must lock them in one order (the SKU order), or each
// could hold one row the other waits for. Seen from a third connection: while A is held elsewhere,
// a settlement of (B, A) waits for A without having locked B.
describe(
  'stock rows are locked in SKU order, whatever the order of the lines [postgres]',
  { skip: postgresUrl ? false : 'needs TEST_DATABASE_URL' },
  () => {
    let env: TestEnv;
    before(async () => {
      env = await startTestEnv('postgres');
    });
    after(async () => {
      await env?.close();
    });

    it('releasing, selling and returning stock of (B, A) lock A first', async () => {
      const { database } = env;
      // B is created first, so B also comes first in the table: only the SKU order puts A first.
      await env.product([
        { sku: 'LOCK-B', stock: 10 },
        { sku: 'LOCK-A', stock: 10 },
      ]);
      const lines = [
        { sku: 'LOCK-B', quantity: 1 },
        { sku: 'LOCK-A', quantity: 1 },
      ];
      await database.db.transaction((tx) =>
        reserveForOrders(
          tx,
          [...lines, ...lines].map((l) => ({ orderId: 'ord_lock', ...l })),
        ),
      );
      const settlements: [string, (tx: Tx) => Promise<void>][] = [
        [
          'release',
          (tx) =>
            settleReservations(
              tx,
              lines.map((l) => ({ orderId: 'ord_lock', ...l, kind: 'release' })),
            ),
        ],
        [
          'sale',
          (tx) =>
            settleReservations(
              tx,
              lines.map((l) => ({ orderId: 'ord_lock', ...l, kind: 'sale' })),
            ),
        ],
        ['return', (tx) => returnSoldStock(tx, 'ord_lock', lines)],
      ];
      for (const [name, settle] of settlements) {
        let letGo!: () => void;
        const held = new Promise<void>((resolve) => {
          letGo = resolve;
        });
        let holding!: () => void;
        const isHeld = new Promise<void>((resolve) => {
          holding = resolve;
        });
        const holder = database.db.transaction(async (tx) => {
          await tx.query("SELECT 1 FROM stock_levels WHERE sku = 'LOCK-A' FOR UPDATE");
          holding();
          await held;
        });
        await isHeld;
        const settling = database.db.transaction(settle);
        await waitFor(`${name} waiting for a row lock`, async () => {
          const rows = await database.db.query(
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%stock_levels%'",
          );
          return rows.length > 0 || undefined;
        });
        const probe = await database.db
          .transaction((tx) =>
            tx.query<{ sku: string }>("SELECT sku FROM stock_levels WHERE sku = 'LOCK-B' FOR UPDATE NOWAIT"),
          )
          .catch((err: { code?: string }) => err.code);
        letGo();
        await holder;
        await settling;
        assert.deepEqual(probe, [{ sku: 'LOCK-B' }], `${name}: B was locked while waiting for A`);
      }
      const levels = await database.db.query(
        "SELECT sku, on_hand, reserved FROM stock_levels WHERE sku LIKE 'LOCK-%' ORDER BY sku",
      );
      assert.deepEqual(levels, [
        { sku: 'LOCK-A', on_hand: 10, reserved: 0 },
        { sku: 'LOCK-B', on_hand: 10, reserved: 0 },
      ]);
      await assertStockExplained(database.db);
    });
  },
);
