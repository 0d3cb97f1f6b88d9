// Money stays exact end to end: amounts are integers in JS numbers, exact only below 2^53. The
// bounds on prices and order sizes keep every total below that (src/limits.ts); a
// value beyond it, from before the bounds, is refused where it is read rather than rounded, and
// one such order or payment cannot hold up a job's other work.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine, type TestEnv } from './support/app.ts';
import { endpoints } from '../src/client.ts';
import { limits, maxOrderTotal, maxUnitPrice } from '../src/limits.ts';
import { chargeMany, expireUnpaidOrders } from '../src/modules/orders/lifecycle.ts';
import { chargeOnce } from './support/charge.ts';
import { createSandboxProvider } from '../src/modules/payments/providers/sandbox.ts';
import { runAudit } from '../src/modules/ledger/audit.ts';
import { assertStockExplained } from './support/stock.ts';

const card = { method: 'card' as const, token: 'tok_ok' };
let keys = 0;
const key = () => `money-${++keys}`;

/** A logger that keeps what was logged, for asserting on it. */
function recordingLog() {
  const lines: { level: string; fields: Record<string, unknown>; msg: string }[] = [];
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) => {
    lines.push({ level, fields, msg });
  };
  return { lines, log: { error: at('error'), warn: at('warn'), info: at('info') } as never };
}

forEachEngine('money stays exact', 'parity', (env) => {
  it('an order of the most SKUs, units and highest prices the limits allow totals exactly, from the answer to the ledger', async () => {
    const e = env();
    // Prices that differ in their last digits, so a rounded sum could not pass for the exact one.
    const variants = Array.from({ length: limits.linesPerOrder }, (_, i) => ({
      sku: `MAX-${i}`,
      stock: limits.quantityPerLine,
      amount: maxUnitPrice - i * 7,
    }));
    await e.product(variants, 'The most expensive things');
    const expected = variants.reduce((sum, v) => sum + BigInt(v.amount) * BigInt(limits.quantityPerLine), 0n);
    assert.ok(expected > 2n ** 52n, 'a total where a float sum of these terms would be at risk');
    assert.ok(expected <= BigInt(maxOrderTotal));
    const c = await e.customer();
    const order = await e.client.ok(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: { lines: variants.map((v) => ({ sku: v.sku, quantity: limits.quantityPerLine })), payment: card },
    });
    assert.equal(BigInt(order.total.amount), expected);
    assert.equal(
      BigInt((await e.client.ok(endpoints.getOrder, { token: c.token, params: { id: order.id } })).total.amount),
      expected,
    );
    const [stored] = await e.database.db.query<{ total: string; lines: string; payment: string }>(
      `SELECT o.total_amount::text AS total, (SELECT sum(total_amount)::text FROM order_lines WHERE order_id = o.id) AS lines, p.amount::text AS payment
         FROM orders o JOIN payments p ON p.order_id = o.id WHERE o.id = $1`,
      [order.id],
    );
    assert.deepEqual(stored, { total: String(expected), lines: String(expected), payment: String(expected) });

    const [payment] = await e.database.db.query<{ id: string }>('SELECT id FROM payments WHERE order_id = $1', [
      order.id,
    ]);
    await chargeOnce(e.database.db, createSandboxProvider(e.database.db), payment!.id);
    assert.equal((await e.client.ok(endpoints.getOrder, { token: c.token, params: { id: order.id } })).status, 'paid');
    const [captured] = await e.database.db.query<{ debit: string }>(
      `SELECT e.debit::text AS debit FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
        WHERE t.order_id = $1 AND t.kind = 'capture' AND e.account = 'processor_clearing'`,
      [order.id],
    );
    assert.equal(captured?.debit, String(expected));
    const audit = await runAudit(e.database.db, e.config);
    assert.deepEqual(
      audit.checks.filter((check) => !check.ok),
      [],
    );
  });

  it('an order totalling exactly the bound is placed; one minor unit more is refused', async () => {
    const e = env();
    const skus = Array.from({ length: limits.linesPerOrder }, (_, i) => `BOUND-${i}`);
    await e.product(skus.map((sku) => ({ sku, stock: limits.quantityPerLine, amount: maxUnitPrice })));
    const c = await e.customer();
    const body = { lines: skus.map((sku) => ({ sku, quantity: limits.quantityPerLine })), payment: card };
    // One price a minor unit above the bound (as a database from before it may hold): the total is
    // maxOrderTotal + 1000, refused.
    await e.database.db.query('UPDATE variants SET price_amount = price_amount + 1 WHERE sku = $1', [skus[0]]);
    const over = await e.client.call(endpoints.placeOrder, { token: c.token, idempotencyKey: key(), body });
    assert.equal(over.status, 422);
    assert.equal(over.body.code, 'limit_exceeded');
    assert.equal(over.body.detail, `An order may total at most ${maxOrderTotal} minor units`);
    await e.database.db.query('UPDATE variants SET price_amount = $2 WHERE sku = $1', [skus[0], maxUnitPrice]);
    const order = await e.client.ok(endpoints.placeOrder, { token: c.token, idempotencyKey: key(), body });
    assert.equal(order.total.amount, maxOrderTotal);
  });

  it('refuses a price above the bound with 400, on create and on update', async () => {
    const e = env();
    const tooDear = { amount: maxUnitPrice + 1, currency: 'EUR' };
    const created = await e.client.call(endpoints.createProduct, {
      token: e.adminToken,
      body: { name: 'Too dear', variants: [{ sku: 'DEAR-1', price: tooDear, stock: 1 }] },
    });
    assert.equal(created.status, 400);
    assert.equal(created.body.code, 'validation_failed');
    assert.deepEqual(
      created.body.errors?.map((x) => x.path),
      ['/variants/0/price/amount'],
    );
    const product = await e.product([{ sku: 'DEAR-2', stock: 1, amount: maxUnitPrice }]);
    const updated = await e.client.call(endpoints.updateProduct, {
      token: e.adminToken,
      params: { id: product.id },
      body: { variants: [{ sku: 'DEAR-2', price: tooDear }] },
    });
    assert.equal(updated.status, 400);
    assert.equal(
      (await e.client.ok(endpoints.getProduct, { params: { id: product.id } })).variants[0]!.price.amount,
      maxUnitPrice,
    );
  });

  it('an order whose total would pass the bound (prices from before it) is refused with 422, not rounded', async () => {
    const e = env();
    const skus = Array.from({ length: 6 }, (_, i) => `OLD-PRICE-${i}`);
    await e.product(skus.map((sku) => ({ sku, stock: limits.quantityPerLine })));
    // Prices the API no longer accepts, as a database from before the bound may hold.
    await e.database.db.query('UPDATE variants SET price_amount = 1000000000000 WHERE sku = ANY($1::text[])', [skus]);
    const c = await e.customer();
    const res = await e.client.call(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: { lines: skus.map((sku) => ({ sku, quantity: limits.quantityPerLine })), payment: card },
    });
    assert.equal(res.status, 422);
    assert.equal(res.body.code, 'limit_exceeded');
    assert.equal(
      (await e.database.db.query('SELECT 1 FROM order_lines WHERE sku = ANY($1::text[])', [skus])).length,
      0,
    );
    // One of them alone fits, and is exact.
    const one = await e.client.ok(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: { lines: [{ sku: skus[0]!, quantity: limits.quantityPerLine }], payment: card },
    });
    assert.equal(one.total.amount, 1_000_000_000_000 * limits.quantityPerLine);
  });

  it('the database refuses an amount a number cannot hold exactly, whatever the code does', async () => {
    const e = env();
    await assert.rejects(
      e.database.db.query('UPDATE orders SET total_amount = 9007199254740992 WHERE id = (SELECT min(id) FROM orders)'),
      /orders_total_amount_exact/,
    );
    await assert.rejects(
      e.database.db.query('UPDATE variants SET price_amount = 9007199254740992 WHERE sku = $1', ['MAX-0']),
      /variants_price_amount_exact/,
    );
  });
});

/**
 * Orders and payments with an amount beyond 2^53, as a database from before the bounds may hold
 * (planted by SQL, past the constraints that now refuse them): reading one fails, loudly.
 */
async function plantUnreadable(e: TestEnv, sku: string, ids: string[], customerId: string): Promise<void> {
  const db = e.database.db;
  await db.exec(
    'ALTER TABLE orders DROP CONSTRAINT orders_total_amount_exact; ALTER TABLE payments DROP CONSTRAINT payments_amount_exact',
  );
  for (const id of ids) {
    await db.query(
      `INSERT INTO orders (id, customer_id, status, currency, total_amount, payment_method, payment_token, created_at)
       VALUES ($1, $2, 'pending_payment', 'EUR', 9007199254740993, 'card', 'tok_ok', now() - interval '2 hours')`,
      [id, customerId],
    );
    await db.query(`INSERT INTO order_lines VALUES ($1, 1, $2, 1, 1000, 1000)`, [id, sku]);
    await db.query(
      `INSERT INTO payments (id, order_id, amount, currency, status) VALUES ($1, $2, 9007199254740993, 'EUR', 'pending')`,
      [`pay_${id}`, id],
    );
    await db.query(`UPDATE stock_levels SET reserved = reserved + 1 WHERE sku = $1`, [sku]);
    await db.query(
      `INSERT INTO stock_movements (sku, kind, on_hand_delta, reserved_delta, order_id) VALUES ($1, 'reservation', 0, 1, $2)`,
      [sku, id],
    );
  }
}

forEachEngine('an order or payment no number can hold', 'parity', (env) => {
  const poison = ['ord_0000poison1', 'ord_0000poison2', 'ord_0000poison3'];

  it('does not stop the expiry of the other unpaid orders: it is logged and skipped, page after page', async () => {
    const e = env();
    await e.product([{ sku: 'STALE', stock: 100 }]);
    const c = await e.customer();
    await plantUnreadable(e, 'STALE', poison, c.id);
    // Two ordinary orders, placed through the API and made old; their ids sort after the planted ones.
    const placed = [];
    for (let i = 0; i < 2; i++)
      placed.push(
        await e.client.ok(endpoints.placeOrder, {
          token: c.token,
          idempotencyKey: key(),
          body: { lines: [{ sku: 'STALE', quantity: 2 }], payment: card },
        }),
      );
    await e.database.db.query(`UPDATE orders SET created_at = now() - interval '2 hours' WHERE id = ANY($1::text[])`, [
      placed.map((o) => o.id),
    ]);

    const { lines, log } = recordingLog();
    // Pages of two: the first page holds only orders that cannot be cancelled.
    assert.equal(await expireUnpaidOrders(e.database.db, 3600, { batch: 2, log }), 2);
    for (const o of placed)
      assert.equal(
        (await e.client.ok(endpoints.getOrder, { token: c.token, params: { id: o.id } })).status,
        'cancelled',
      );
    assert.deepEqual(
      lines.filter((l) => l.level === 'error').map((l) => l.fields.orderId),
      poison,
    );
    assert.deepEqual(await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'STALE' } }), {
      sku: 'STALE',
      onHand: 100,
      reserved: poison.length,
      available: 100 - poison.length,
    });
    await assertStockExplained(e.database.db);
  });

  it('fails alone in a charge batch: logged and retried, while the rest of the batch is charged', async () => {
    const e = env();
    const c = await e.customer();
    const ok = [];
    for (let i = 0; i < 2; i++)
      ok.push(
        await e.client.ok(endpoints.placeOrder, {
          token: c.token,
          idempotencyKey: key(),
          body: { lines: [{ sku: 'STALE', quantity: 1 }], payment: card },
        }),
      );
    const payments = await e.database.db.query<{ id: string }>(
      'SELECT id FROM payments WHERE order_id = ANY($1::text[]) ORDER BY id',
      [ok.map((o) => o.id)],
    );
    const ids = [payments[0]!.id, `pay_${poison[0]}`, payments[1]!.id];
    const { lines, log } = recordingLog();
    const retry = await chargeMany(e.database.db, createSandboxProvider(e.database.db), ids, { log });
    assert.deepEqual([...retry.keys()], [`pay_${poison[0]}`]);
    assert.match(retry.get(`pay_${poison[0]}`)!.message, /beyond what a JavaScript number holds exactly/);
    for (const o of ok)
      assert.equal((await e.client.ok(endpoints.getOrder, { token: c.token, params: { id: o.id } })).status, 'paid');
    assert.deepEqual(
      lines.filter((l) => l.level === 'error').map((l) => l.fields.paymentId),
      [`pay_${poison[0]}`],
    );
  });

  it('is found by the audit, whose other checks still run', async () => {
    const e = env();
    const audit = await runAudit(e.database.db, e.config);
    assert.equal(audit.ok, false);
    const failed = new Map(audit.checks.filter((check) => !check.ok).map((check) => [check.name, check.violations]));
    const bounds = failed.get(
      'every amount is within the bounds the API accepts (prices, and totals a number holds exactly)',
    );
    assert.ok(
      bounds?.some(
        (v) => JSON.stringify(v) === JSON.stringify({ table: 'orders', row: poison[0], amount: '9007199254740993' }),
      ),
      JSON.stringify(bounds),
    );
    assert.ok(
      bounds?.some(
        (v) =>
          JSON.stringify(v) ===
          JSON.stringify({ table: 'payments', row: `pay_${poison[0]}`, amount: '9007199254740993' }),
      ),
    );
    assert.ok(
      failed
        .get("every order's total is the sum of its lines")
        ?.some((v) => (v as { order_id: string }).order_id === poison[0]),
    );
  });
});
