import { it } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine, type TestEnv } from './support/app.js';
import { endpoints } from '../src/client.js';
import { assertStockExplained } from './support/stock.js';
import { waitFor } from './support/wait.js';
import { runAudit } from '../src/modules/ledger/audit.js';
import { chargeOnce } from '../src/modules/payments/service.js';
import { createSandboxProvider } from '../src/modules/payments/providers/sandbox.js';
import { expireUnpaidOrders } from '../src/modules/orders/service.js';

let n = 0;

async function order(env: TestEnv, token: string, sku: string, quantity = 1) {
  const c = await env.customer();
  return { customer: c, order: await env.client.ok(endpoints.placeOrder, { token: c.token, idempotencyKey: `pay-${++n}`, body: { lines: [{ sku, quantity }], payment: { method: 'card', token } } }) };
}

async function settled(env: TestEnv, customerToken: string, orderId: string, statuses: string[]) {
  return waitFor(`order ${orderId} to become ${statuses.join(' or ')}`, async () => {
    const o = await env.client.ok(endpoints.getOrder, { token: customerToken, params: { id: orderId } });
    return statuses.includes(o.status) ? o : undefined;
  });
}

async function assertBooksBalance(env: TestEnv) {
  const audit = await runAudit(env.database.db);
  assert.deepEqual(audit.checks.filter((c) => !c.ok), [], 'the audit passes');
  await assertStockExplained(env.database.db);
}

async function sandboxChargesFor(env: TestEnv, orderId: string) {
  return env.database.db.query<{ status: string; attempts: number; amount: number; refunded_amount: number }>('SELECT status, attempts, amount, refunded_amount FROM sandbox_charges WHERE order_id = $1', [orderId]);
}

forEachEngine('payments through the queue', (env) => {
  it('tok_ok: the order becomes paid, its reservation a sale, the capture posted once', async () => {
    const e = env();
    await e.product([{ sku: 'PAY', stock: 100, amount: 2500 }]);
    const { customer, order: o } = await order(e, 'tok_ok', 'PAY', 2);
    const paid = await settled(e, customer.token, o.id, ['paid']);
    assert.equal(paid.status, 'paid');
    assert.deepEqual(await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'PAY' } }), { sku: 'PAY', onHand: 98, reserved: 0, available: 98 });
    const payments = await e.client.ok(endpoints.listOrderPayments, { token: customer.token, params: { id: o.id } });
    assert.equal(payments.data.length, 1);
    assert.equal(payments.data[0]!.status, 'succeeded');
    assert.deepEqual(payments.data[0]!.amount, { amount: 5000, currency: 'EUR' });
    assert.deepEqual(await sandboxChargesFor(e, o.id), [{ status: 'succeeded', attempts: 1, amount: 5000, refunded_amount: 0 }]);
    const balances = await e.client.ok(endpoints.ledgerBalances, { token: e.adminToken });
    const sales = balances.data.find((b) => b.account === 'sales' && b.currency === 'EUR')!;
    assert.ok(sales.credits >= 5000);
    const other = await e.customer();
    assert.equal((await e.client.call(endpoints.listOrderPayments, { token: other.token, params: { id: o.id } })).status, 404);
    await assertBooksBalance(e);
  });

  it('tok_declined: payment_failed, the reservation released, nothing captured', async () => {
    const e = env();
    const before = await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'PAY' } });
    const { customer, order: o } = await order(e, 'tok_declined', 'PAY', 3);
    await settled(e, customer.token, o.id, ['payment_failed']);
    assert.deepEqual(await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'PAY' } }), before);
    const [payment] = (await e.client.ok(endpoints.listOrderPayments, { token: customer.token, params: { id: o.id } })).data;
    assert.equal(payment!.status, 'failed');
    assert.equal((await e.database.db.query('SELECT 1 FROM ledger_transactions WHERE order_id = $1', [o.id])).length, 0);
    await assertBooksBalance(e);
  });

  it('tok_flaky: retried with backoff and paid, charged once', async () => {
    const e = env();
    const { customer, order: o } = await order(e, 'tok_flaky', 'PAY');
    await settled(e, customer.token, o.id, ['paid']);
    const [payment] = (await e.client.ok(endpoints.listOrderPayments, { token: customer.token, params: { id: o.id } })).data;
    assert.equal(payment!.attempts, 3);
    const charges = await sandboxChargesFor(e, o.id);
    assert.equal(charges.length, 1);
    assert.equal(charges[0]!.status, 'succeeded');
    await assertBooksBalance(e);
  });

  it('tok_lost_response: the retry with the same key finds the charge and does not charge again', async () => {
    const e = env();
    const { customer, order: o } = await order(e, 'tok_lost_response', 'PAY');
    await settled(e, customer.token, o.id, ['paid']);
    const charges = await sandboxChargesFor(e, o.id);
    assert.deepEqual(charges.map((c) => [c.status, c.attempts]), [['succeeded', 2]]);
    await assertBooksBalance(e);
  });

  it('tok_slow: paid once the processor answers', async () => {
    const e = env();
    const { customer, order: o } = await order(e, 'tok_slow', 'PAY');
    await settled(e, customer.token, o.id, ['paid']);
    await assertBooksBalance(e);
  });

  it('cancelling a paid order refunds it in full, exactly once, and returns its units', async () => {
    const e = env();
    const { customer, order: o } = await order(e, 'tok_ok', 'PAY', 4);
    await settled(e, customer.token, o.id, ['paid']);
    const before = await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'PAY' } });
    const cancels = await Promise.all([1, 2, 3].map((k) => e.client.call(endpoints.cancelOrder, { token: customer.token, idempotencyKey: `refund-${o.id}-${k}`, params: { id: o.id } })));
    assert.deepEqual(cancels.map((c) => c.status).sort(), [200, 409, 409]);
    await waitFor('the refund', async () => {
      const [p] = (await e.client.ok(endpoints.listOrderPayments, { token: customer.token, params: { id: o.id } })).data;
      return p!.status === 'refunded' ? p : undefined;
    });
    assert.equal((await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'PAY' } })).onHand, before.onHand + 4);
    const [charge] = await sandboxChargesFor(e, o.id);
    assert.equal(charge!.refunded_amount, charge!.amount);
    const refunds = await e.database.db.query("SELECT 1 FROM ledger_transactions WHERE order_id = $1 AND kind = 'refund'", [o.id]);
    assert.equal(refunds.length, 1);
    await assertBooksBalance(e);
  });

  it('cancel racing against payment: whichever wins, the books balance and the audit passes', async () => {
    const e = env();
    const placed = await Promise.all(Array.from({ length: 12 }, (_, i) => order(e, i % 3 === 0 ? 'tok_slow' : 'tok_ok', 'PAY')));
    await Promise.all(placed.map(({ customer, order: o }, i) => new Promise((r) => setTimeout(r, (i % 4) * 40)).then(() =>
      e.client.call(endpoints.cancelOrder, { token: customer.token, idempotencyKey: `race-${o.id}`, params: { id: o.id } }))));
    for (const { customer, order: o } of placed) {
      await settled(e, customer.token, o.id, ['cancelled', 'paid']);
      await waitFor(`payments of ${o.id} to settle`, async () => {
        const [p] = (await e.client.ok(endpoints.listOrderPayments, { token: customer.token, params: { id: o.id } })).data;
        const refund = await e.database.db.query("SELECT 1 FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE p.order_id = $1 AND r.status = 'pending'", [o.id]);
        return p && p.status !== 'pending' && refund.length === 0 ? p : undefined;
      });
    }
    // Every cancelled order whose charge went through has been refunded.
    const unrefunded = await e.database.db.query("SELECT o.id FROM orders o JOIN payments p ON p.order_id = o.id WHERE o.status = 'cancelled' AND p.status = 'succeeded'");
    assert.deepEqual(unrefunded, []);
    await assertBooksBalance(e);
  });

  it('an order unpaid past the timeout is cancelled and its stock released', async () => {
    const e = env();
    const { customer, order: o } = await order(e, 'tok_ok', 'PAY');
    await settled(e, customer.token, o.id, ['paid']);
    const before = await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'PAY' } });
    // An order the worker has not reached yet, made old.
    await e.database.db.query("INSERT INTO orders (id, customer_id, status, currency, total_amount, payment_method, payment_token, created_at) VALUES ('ord_stale0000000000000000000000', $1, 'pending_payment', 'EUR', 2500, 'card', 'tok_ok', now() - interval '2 hours')", [customer.id]);
    await e.database.db.query("INSERT INTO order_lines VALUES ('ord_stale0000000000000000000000', 1, 'PAY', 1, 2500, 2500)");
    await e.database.db.query("UPDATE stock_levels SET reserved = reserved + 1 WHERE sku = 'PAY'");
    await e.database.db.query("INSERT INTO stock_movements (sku, kind, on_hand_delta, reserved_delta, order_id) VALUES ('PAY', 'reservation', 0, 1, 'ord_stale0000000000000000000000')");
    assert.equal(await expireUnpaidOrders(e.database.db, 3600), 1);
    assert.equal((await e.client.ok(endpoints.getOrder, { token: customer.token, params: { id: 'ord_stale0000000000000000000000' } })).status, 'cancelled');
    assert.deepEqual(await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'PAY' } }), before);
    assert.equal(await expireUnpaidOrders(e.database.db, 3600), 0);
  });
}, {}, { workers: true });

forEachEngine('a charge job delivered twice', (env) => {
  it('charges once when two runs of the same job race', async () => {
    const e = env();
    await e.product([{ sku: 'TWICE', stock: 10 }]);
    const { customer, order: o } = await order(e, 'tok_slow', 'TWICE');
    const [payment] = await e.database.db.query<{ id: string }>('SELECT id FROM payments WHERE order_id = $1', [o.id]);
    const provider = createSandboxProvider(e.database.db, { slowDelayMs: 100 });
    await Promise.all([chargeOnce(e.database.db, provider, payment!.id), chargeOnce(e.database.db, provider, payment!.id)]);
    await chargeOnce(e.database.db, provider, payment!.id);
    assert.equal((await e.client.ok(endpoints.getOrder, { token: customer.token, params: { id: o.id } })).status, 'paid');
    const charges = await sandboxChargesFor(e, o.id);
    assert.equal(charges.length, 1);
    assert.equal((await e.database.db.query("SELECT 1 FROM ledger_transactions WHERE order_id = $1 AND kind = 'capture'", [o.id])).length, 1);
    assert.equal((await runAudit(e.database.db)).ok, true);
  });
});
