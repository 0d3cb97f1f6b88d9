import { it } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine, type TestEnv } from './support/app.ts';
import { endpoints } from '../src/client.ts';
import { assertStockExplained } from './support/stock.ts';
import { waitFor } from './support/wait.ts';
import { runAudit } from '../src/modules/ledger/audit.ts';
import { chargeMany, expireUnpaidOrders, refundOnce } from '../src/modules/orders/lifecycle.ts';
import { chargeOnce } from './support/charge.ts';
import type { PaymentProvider } from '../src/modules/payments/providers/provider.ts';
import type { Db, Tx } from '../src/platform/db.ts';
import { createSandboxProvider } from '../src/modules/payments/providers/sandbox.ts';

let n = 0;

async function order(env: TestEnv, token: string, sku: string, quantity = 1) {
  const c = await env.customer();
  return {
    customer: c,
    order: await env.client.ok(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: `pay-${++n}`,
      body: { lines: [{ sku, quantity }], payment: { method: 'card', token } },
    }),
  };
}

async function settled(env: TestEnv, customerToken: string, orderId: string, statuses: string[]) {
  return waitFor(`order ${orderId} to become ${statuses.join(' or ')}`, async () => {
    const o = await env.client.ok(endpoints.getOrder, { token: customerToken, params: { id: orderId } });
    return statuses.includes(o.status) ? o : undefined;
  });
}

async function assertBooksBalance(env: TestEnv) {
  const audit = await runAudit(env.database.db, env.config);
  assert.deepEqual(
    audit.checks.filter((c) => !c.ok),
    [],
    'the audit passes',
  );
  await assertStockExplained(env.database.db);
}

async function sandboxChargesFor(env: TestEnv, orderId: string) {
  return env.database.db.query<{ status: string; attempts: number; amount: number; refunded_amount: number }>(
    'SELECT status, attempts, amount, refunded_amount FROM sandbox_charges WHERE order_id = $1',
    [orderId],
  );
}

forEachEngine(
  'payments through the queue',
  'parity',
  (env) => {
    it('tok_ok: the order becomes paid, its reservation a sale, the capture posted once', async () => {
      const e = env();
      await e.product([{ sku: 'PAY', stock: 100, amount: 2500 }]);
      const { customer, order: o } = await order(e, 'tok_ok', 'PAY', 2);
      const paid = await settled(e, customer.token, o.id, ['paid']);
      assert.equal(paid.status, 'paid');
      assert.deepEqual(await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'PAY' } }), {
        sku: 'PAY',
        onHand: 98,
        reserved: 0,
        available: 98,
      });
      const payments = await e.client.ok(endpoints.listOrderPayments, { token: customer.token, params: { id: o.id } });
      assert.equal(payments.data.length, 1);
      assert.equal(payments.data[0]!.status, 'succeeded');
      assert.deepEqual(payments.data[0]!.amount, { amount: 5000, currency: 'EUR' });
      assert.deepEqual(await sandboxChargesFor(e, o.id), [
        { status: 'succeeded', attempts: 1, amount: 5000, refunded_amount: 0 },
      ]);
      const balances = await e.client.ok(endpoints.ledgerBalances, { token: e.adminToken });
      const sales = balances.data.find((b) => b.account === 'sales' && b.currency === 'EUR')!;
      assert.ok(sales.credits >= 5000);
      // A balance is debits minus credits: sales, credited for every capture, stand below zero.
      assert.ok(sales.balance <= -5000, `sales balance ${sales.balance}`);
      for (const b of balances.data) assert.equal(b.balance, b.debits - b.credits, `${b.account} ${b.currency}`);
      const other = await e.customer();
      assert.equal(
        (await e.client.call(endpoints.listOrderPayments, { token: other.token, params: { id: o.id } })).status,
        404,
      );
      await assertBooksBalance(e);
    });

    it('a free order (price 0) is paid with nothing posted to the ledger, whose entries are never zero', async () => {
      const e = env();
      await e.product([{ sku: 'FREE', stock: 10, amount: 0 }]);
      const { customer, order: o } = await order(e, 'tok_ok', 'FREE');
      assert.equal((await settled(e, customer.token, o.id, ['paid'])).status, 'paid');
      assert.deepEqual(await e.database.db.query('SELECT 1 FROM ledger_transactions WHERE order_id = $1', [o.id]), []);
      await assertBooksBalance(e);
    });

    it('tok_declined: payment_failed, the reservation released, nothing captured', async () => {
      const e = env();
      const before = await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'PAY' } });
      const { customer, order: o } = await order(e, 'tok_declined', 'PAY', 3);
      await settled(e, customer.token, o.id, ['payment_failed']);
      assert.deepEqual(await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'PAY' } }), before);
      const [payment] = (
        await e.client.ok(endpoints.listOrderPayments, { token: customer.token, params: { id: o.id } })
      ).data;
      assert.equal(payment!.status, 'failed');
      assert.equal(
        (await e.database.db.query('SELECT 1 FROM ledger_transactions WHERE order_id = $1', [o.id])).length,
        0,
      );
      await assertBooksBalance(e);
    });

    it('tok_flaky: retried with backoff and paid, charged once', async () => {
      const e = env();
      const { customer, order: o } = await order(e, 'tok_flaky', 'PAY');
      await settled(e, customer.token, o.id, ['paid']);
      const [payment] = (
        await e.client.ok(endpoints.listOrderPayments, { token: customer.token, params: { id: o.id } })
      ).data;
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
      assert.deepEqual(
        charges.map((c) => [c.status, c.attempts]),
        [['succeeded', 2]],
      );
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
      const cancels = await Promise.all(
        [1, 2, 3].map((k) =>
          e.client.call(endpoints.cancelOrder, {
            token: customer.token,
            idempotencyKey: `refund-${o.id}-${k}`,
            params: { id: o.id },
          }),
        ),
      );
      assert.deepEqual(cancels.map((c) => c.status).sort(), [200, 409, 409]);
      await waitFor('the refund', async () => {
        const [p] = (await e.client.ok(endpoints.listOrderPayments, { token: customer.token, params: { id: o.id } }))
          .data;
        return p!.status === 'refunded' ? p : undefined;
      });
      assert.equal(
        (await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'PAY' } })).onHand,
        before.onHand + 4,
      );
      const [charge] = await sandboxChargesFor(e, o.id);
      assert.equal(charge!.refunded_amount, charge!.amount);
      const refunds = await e.database.db.query(
        "SELECT 1 FROM ledger_transactions WHERE order_id = $1 AND kind = 'refund'",
        [o.id],
      );
      assert.equal(refunds.length, 1);
      await assertBooksBalance(e);
    });

    it('cancel racing against payment: whichever wins, the books balance and the audit passes', async () => {
      const e = env();
      const placed = await Promise.all(
        Array.from({ length: 12 }, (_, i) => order(e, i % 3 === 0 ? 'tok_slow' : 'tok_ok', 'PAY')),
      );
      await Promise.all(
        placed.map(({ customer, order: o }, i) =>
          new Promise((r) => setTimeout(r, (i % 4) * 40)).then(() =>
            e.client.call(endpoints.cancelOrder, {
              token: customer.token,
              idempotencyKey: `race-${o.id}`,
              params: { id: o.id },
            }),
          ),
        ),
      );
      for (const { customer, order: o } of placed) {
        await settled(e, customer.token, o.id, ['cancelled', 'paid']);
        await waitFor(`payments of ${o.id} to settle`, async () => {
          const [p] = (await e.client.ok(endpoints.listOrderPayments, { token: customer.token, params: { id: o.id } }))
            .data;
          const refund = await e.database.db.query(
            "SELECT 1 FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE p.order_id = $1 AND r.status = 'pending'",
            [o.id],
          );
          return p && p.status !== 'pending' && refund.length === 0 ? p : undefined;
        });
      }
      // Every cancelled order whose charge went through has been refunded.
      const unrefunded = await e.database.db.query(
        "SELECT o.id FROM orders o JOIN payments p ON p.order_id = o.id WHERE o.status = 'cancelled' AND p.status = 'succeeded'",
      );
      assert.deepEqual(unrefunded, []);
      await assertBooksBalance(e);
    });

    it('an order unpaid past the timeout is cancelled and its stock released', async () => {
      const e = env();
      const { customer, order: o } = await order(e, 'tok_ok', 'PAY');
      await settled(e, customer.token, o.id, ['paid']);
      const before = await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'PAY' } });
      // An order the worker has not reached yet, made old.
      await e.database.db.query(
        "INSERT INTO orders (id, customer_id, status, currency, total_amount, payment_method, payment_token, created_at) VALUES ('ord_stale0000000000000000000000', $1, 'pending_payment', 'EUR', 2500, 'card', 'tok_ok', now() - interval '2 hours')",
        [customer.id],
      );
      await e.database.db.query(
        "INSERT INTO order_lines VALUES ('ord_stale0000000000000000000000', 1, 'PAY', 1, 2500, 2500)",
      );
      await e.database.db.query("UPDATE stock_levels SET reserved = reserved + 1 WHERE sku = 'PAY'");
      await e.database.db.query(
        "INSERT INTO stock_movements (sku, kind, on_hand_delta, reserved_delta, order_id) VALUES ('PAY', 'reservation', 0, 1, 'ord_stale0000000000000000000000')",
      );
      assert.equal(await expireUnpaidOrders(e.database.db, 3600), 1);
      assert.equal(
        (
          await e.client.ok(endpoints.getOrder, {
            token: customer.token,
            params: { id: 'ord_stale0000000000000000000000' },
          })
        ).status,
        'cancelled',
      );
      assert.deepEqual(await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'PAY' } }), before);
      assert.equal(await expireUnpaidOrders(e.database.db, 3600), 0);
    });
  },
  {},
  { workers: true },
);

forEachEngine('a charge job delivered twice', 'parity', (env) => {
  it('charges once when two runs of the same job race', async () => {
    const e = env();
    await e.product([{ sku: 'TWICE', stock: 10 }]);
    const { customer, order: o } = await order(e, 'tok_slow', 'TWICE');
    const [payment] = await e.database.db.query<{ id: string }>('SELECT id FROM payments WHERE order_id = $1', [o.id]);
    const provider = createSandboxProvider(e.database.db, { slowDelayMs: 100 });
    const errors: unknown[] = [];
    const log = {
      error: (...args: unknown[]) => {
        errors.push(args);
      },
      warn: () => {},
      info: () => {},
    } as never;
    await Promise.all([
      chargeOnce(e.database.db, provider, payment!.id, { log }),
      chargeOnce(e.database.db, provider, payment!.id, { log }),
    ]);
    await chargeOnce(e.database.db, provider, payment!.id, { log });
    assert.equal(
      (await e.client.ok(endpoints.getOrder, { token: customer.token, params: { id: o.id } })).status,
      'paid',
    );
    // The runs that found the payment settled did nothing, and asked no operator to look.
    assert.deepEqual(errors, []);
    const charges = await sandboxChargesFor(e, o.id);
    assert.equal(charges.length, 1);
    assert.equal(
      (await e.database.db.query("SELECT 1 FROM ledger_transactions WHERE order_id = $1 AND kind = 'capture'", [o.id]))
        .length,
      1,
    );
    assert.equal((await runAudit(e.database.db, e.config)).ok, true);
  });

  it('a run the processor asks to repeat fails the job (the queue retries it), and the payment stays pending', async () => {
    const e = env();
    await e.product([{ sku: 'AGAIN', stock: 10 }]);
    const { customer, order: o } = await order(e, 'tok_flaky', 'AGAIN');
    const [payment] = await e.database.db.query<{ id: string }>('SELECT id FROM payments WHERE order_id = $1', [o.id]);
    // No workers run here: tok_flaky fails the first two requests for a key, then succeeds.
    const provider = createSandboxProvider(e.database.db);
    for (let i = 0; i < 2; i++) {
      await assert.rejects(chargeOnce(e.database.db, provider, payment!.id), /try again later/);
      assert.equal(
        (await e.client.ok(endpoints.listOrderPayments, { token: customer.token, params: { id: o.id } })).data[0]!
          .status,
        'pending',
      );
    }
    await chargeOnce(e.database.db, provider, payment!.id);
    assert.equal(
      (await e.client.ok(endpoints.getOrder, { token: customer.token, params: { id: o.id } })).status,
      'paid',
    );
  });
});

forEachEngine('charge jobs worked in a batch', 'parity', (env) => {
  async function paymentOf(e: TestEnv, orderId: string): Promise<string> {
    const [p] = await e.database.db.query<{ id: string }>('SELECT id FROM payments WHERE order_id = $1', [orderId]);
    return p!.id;
  }

  it('one batch pays some orders and fails others, each settled as if alone, the shared SKU written once', async () => {
    const e = env();
    await e.product([
      { sku: 'BATCH-PAY', stock: 50, amount: 700 },
      { sku: 'BATCH-PAY-2', stock: 50, amount: 300 },
    ]);
    const placed = [
      await order(e, 'tok_ok', 'BATCH-PAY', 2),
      await order(e, 'tok_declined', 'BATCH-PAY', 3),
      await order(e, 'tok_ok', 'BATCH-PAY', 1),
      await order(e, 'tok_ok', 'BATCH-PAY-2', 4),
    ];
    // Cancelled before its charge: the batch must not charge it.
    const cancelled = await order(e, 'tok_ok', 'BATCH-PAY', 5);
    await e.client.ok(endpoints.cancelOrder, {
      token: cancelled.customer.token,
      idempotencyKey: `cancel-${++n}`,
      params: { id: cancelled.order.id },
    });
    const ids = [...placed, cancelled].map((p) => p.order.id);
    const payments = await Promise.all(ids.map((id) => paymentOf(e, id)));
    const [movementsBefore] = await e.database.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM stock_movements WHERE sku = 'BATCH-PAY'",
    );

    // The outcomes are recorded in one transaction: were it to fail, each payment would be recorded
    // alone (the fault path), which would hide a batch that settles one order with another's lines.
    let transactions = 0;
    const counting: Db = {
      ...e.database.db,
      transaction: (fn) => {
        transactions++;
        return e.database.db.transaction(fn);
      },
    };
    const retry = await chargeMany(counting, createSandboxProvider(e.database.db), payments);
    assert.deepEqual([...retry.keys()], []);
    assert.equal(transactions, 1, 'the batch was recorded in one transaction');
    const statuses = await Promise.all(
      ids.map(
        async (id, i) =>
          (await e.client.ok(endpoints.getOrder, { token: [...placed, cancelled][i]!.customer.token, params: { id } }))
            .status,
      ),
    );
    assert.deepEqual(statuses, ['paid', 'payment_failed', 'paid', 'paid', 'cancelled']);
    assert.deepEqual(await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'BATCH-PAY' } }), {
      sku: 'BATCH-PAY',
      onHand: 47,
      reserved: 0,
      available: 47,
    });
    assert.deepEqual(await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'BATCH-PAY-2' } }), {
      sku: 'BATCH-PAY-2',
      onHand: 46,
      reserved: 0,
      available: 46,
    });
    // One movement per order that was settled (two sales, one release) on the shared SKU.
    const [movementsAfter] = await e.database.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM stock_movements WHERE sku = 'BATCH-PAY'",
    );
    assert.equal(movementsAfter!.n - movementsBefore!.n, 3);
    assert.equal((await sandboxChargesFor(e, cancelled.order.id)).length, 0, 'the cancelled order was never charged');
    const [events] = await e.database.db.query<{ paid: number; failed: number }>(
      `SELECT count(*) FILTER (WHERE type = 'order.paid')::int AS paid, count(*) FILTER (WHERE type = 'order.payment_failed')::int AS failed
         FROM events WHERE data->'order'->>'id' = ANY($1::text[])`,
      [ids],
    );
    assert.deepEqual(events, { paid: 3, failed: 1 });

    // The same batch again (jobs delivered twice): nothing changes, nothing is charged again, and
    // with nothing to record no transaction is opened.
    transactions = 0;
    assert.deepEqual([...(await chargeMany(counting, createSandboxProvider(e.database.db), payments)).keys()], []);
    assert.equal(transactions, 0);
    for (const p of placed) assert.ok((await sandboxChargesFor(e, p.order.id)).every((c) => c.attempts === 1));
    const [captures] = await e.database.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM ledger_transactions WHERE kind = 'capture' AND order_id = ANY($1::text[])",
      [ids],
    );
    assert.equal(captures!.n, 3);
    await assertBooksBalance(e);
  });

  it('a payment whose outcome cannot be recorded is retried alone; the rest of its batch is recorded', async () => {
    const e = env();
    await e.product([{ sku: 'BATCH-FAULT', stock: 20 }]);
    const placed = [
      await order(e, 'tok_ok', 'BATCH-FAULT'),
      await order(e, 'tok_ok', 'BATCH-FAULT'),
      await order(e, 'tok_ok', 'BATCH-FAULT'),
    ];
    const payments = await Promise.all(placed.map((p) => paymentOf(e, p.order.id)));
    const poison = payments[1]!;
    // Every statement of a recording transaction that names the poisoned payment fails.
    const db: Db = {
      ...e.database.db,
      transaction: (fn) =>
        e.database.db.transaction((tx) =>
          fn({
            ...tx,
            query: async <T>(text: string, params?: readonly unknown[]) => {
              if (/UPDATE payments p SET status/.test(text) && JSON.stringify(params).includes(poison))
                throw new Error('injected fault');
              return tx.query<T>(text, params);
            },
          } as Tx),
        ),
    };
    const logged: unknown[] = [];
    const warned: unknown[] = [];
    const log = {
      error: (fields: unknown) => {
        logged.push(fields);
      },
      warn: (fields: unknown) => {
        warned.push(fields);
      },
      info: () => {},
    } as never;
    // Alone in its batch, it is retried too (and logged).
    assert.deepEqual(
      [...(await chargeMany(db, createSandboxProvider(e.database.db), [poison], { log })).keys()],
      [poison],
    );
    assert.equal(logged.length, 1);
    assert.equal(warned.length, 0, 'a batch of one has no fallback to announce');
    logged.length = 0;
    const retry = await chargeMany(db, createSandboxProvider(e.database.db), payments, { log });
    assert.deepEqual([...retry.keys()], [poison]);
    // The batch's failure is said once (a warning), then each payment is recorded alone.
    assert.deepEqual(
      warned.map((f) => (f as { payments: number }).payments),
      [3],
    );
    // The fault is logged with the payment it concerns, so that an operator can find it.
    assert.deepEqual(
      logged.map((f) => (f as { paymentId?: string }).paymentId),
      [poison],
    );
    assert.match(String((logged[0] as { err?: Error }).err?.message), /injected fault/);
    const statuses = await Promise.all(
      placed.map(
        async (p) =>
          (await e.client.ok(endpoints.getOrder, { token: p.customer.token, params: { id: p.order.id } })).status,
      ),
    );
    assert.deepEqual(statuses, ['paid', 'pending_payment', 'paid']);
    // Its retry (the fault gone) pays it, with the charge the processor already made.
    assert.deepEqual([...(await chargeMany(e.database.db, createSandboxProvider(e.database.db), [poison])).keys()], []);
    assert.equal(
      (await e.client.ok(endpoints.getOrder, { token: placed[1]!.customer.token, params: { id: placed[1]!.order.id } }))
        .status,
      'paid',
    );
    assert.deepEqual(
      (await sandboxChargesFor(e, placed[1]!.order.id)).map((c) => c.status),
      ['succeeded'],
    );
    await assertBooksBalance(e);
  });
});

/** The sandbox, with the charge held at a gate until the test opens it (to shape a race exactly). */
function gatedProvider(db: Db) {
  const sandbox = createSandboxProvider(db);
  let open!: () => void;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  let calls = 0;
  let called!: () => void;
  const reached = new Promise<void>((resolve) => {
    called = resolve;
  });
  const provider: PaymentProvider = {
    name: sandbox.name,
    refund: (r) => sandbox.refund(r),
    charge: async (r) => {
      const result = await sandbox.charge(r);
      calls++;
      called();
      await gate;
      return result;
    },
  };
  return { provider, open, reached, calls: () => calls };
}

/** A paid order of one REC that its customer cancelled: its refund waits to be sent. */
async function refundToSend(e: TestEnv) {
  const { customer, order: o } = await order(e, 'tok_ok', 'REC');
  const payment = await paymentRow(e, o.id);
  const sandbox = createSandboxProvider(e.database.db);
  await chargeOnce(e.database.db, sandbox, payment.id);
  await e.client.ok(endpoints.cancelOrder, {
    token: customer.token,
    idempotencyKey: `refund-${o.id}`,
    params: { id: o.id },
  });
  const [refund] = await e.database.db.query<{ id: string }>('SELECT id FROM refunds WHERE payment_id = $1', [
    payment.id,
  ]);
  return { order: o, payment, sandbox, refund };
}

/** The ledger refunds posted for a payment. */
async function ledgerRefunds(e: TestEnv, paymentId: string): Promise<number> {
  return (
    await e.database.db.query("SELECT 1 FROM ledger_transactions WHERE payment_id = $1 AND kind = 'refund'", [
      paymentId,
    ])
  ).length;
}

async function paymentRow(e: TestEnv, orderId: string) {
  const [p] = await e.database.db.query<{ id: string; status: string; review_reason: string | null }>(
    'SELECT id, status, review_reason FROM payments WHERE order_id = $1',
    [orderId],
  );
  return p!;
}

forEachEngine('recording a charge', 'parity', (env) => {
  it('two runs of one charge that both reach the processor record one capture: no second recording, no refund, no flag', async () => {
    const e = env();
    await e.product([{ sku: 'REC', stock: 100, amount: 900 }]);
    const { customer, order: o } = await order(e, 'tok_ok', 'REC');
    const payment = await paymentRow(e, o.id);
    // Both runs read the payment as pending and call the processor before either records.
    const gated = gatedProvider(e.database.db);
    const runs = [
      chargeOnce(e.database.db, gated.provider, payment.id),
      chargeOnce(e.database.db, gated.provider, payment.id),
    ];
    await waitFor('both runs to call the processor', async () => (gated.calls() === 2 ? true : undefined));
    gated.open();
    await Promise.all(runs);
    assert.equal(
      (await e.client.ok(endpoints.getOrder, { token: customer.token, params: { id: o.id } })).status,
      'paid',
    );
    assert.deepEqual(await paymentRow(e, o.id), { ...payment, status: 'succeeded', review_reason: null });
    assert.equal(
      (await e.database.db.query('SELECT 1 FROM refunds WHERE payment_id = $1', [payment.id])).length,
      0,
      'a paid order is never refunded',
    );
    const [events] = await e.database.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM events WHERE type = 'order.paid' AND data->'order'->>'id' = $1",
      [o.id],
    );
    assert.equal(events!.n, 1);
    await assertBooksBalance(e);
  });

  for (const state of ['paid', 'fulfilled'] as const) {
    it(`a capture landing on an order already ${state} is recorded and flagged for an operator, never refunded`, async () => {
      const e = env();
      const { customer, order: o } = await order(e, 'tok_ok', 'REC');
      const payment = await paymentRow(e, o.id);
      await chargeOnce(e.database.db, createSandboxProvider(e.database.db), payment.id);
      if (state === 'fulfilled')
        await e.client.ok(endpoints.fulfilOrder, { token: e.adminToken, params: { id: o.id } });
      // The books say the payment is still pending (as a lost recording, or a bug, could leave
      // them): the processor answers the capture again.
      await e.database.db.query("UPDATE payments SET status = 'pending' WHERE id = $1", [payment.id]);
      const logged: unknown[] = [];
      const log = {
        error: (fields: unknown, message: string) => {
          logged.push({ ...(fields as object), message });
        },
        warn: () => {},
        info: () => {},
      } as never;
      await chargeOnce(e.database.db, createSandboxProvider(e.database.db), payment.id, { log });
      // The operator hears of it in the log too, with what to look at.
      assert.deepEqual(logged, [
        {
          paymentId: payment.id,
          orderId: o.id,
          reason: `captured while its order was ${state}`,
          message: "a payment needs an operator's review",
        },
      ]);
      assert.equal(
        (await e.client.ok(endpoints.getOrder, { token: customer.token, params: { id: o.id } })).status,
        state,
      );
      const after = await paymentRow(e, o.id);
      assert.equal(after.status, 'succeeded');
      assert.match(after.review_reason ?? '', new RegExp(`captured while its order was ${state}`));
      assert.equal(
        (await e.database.db.query('SELECT 1 FROM refunds WHERE payment_id = $1', [payment.id])).length,
        0,
        'no refund',
      );
      const audit = await runAudit(e.database.db, e.config);
      assert.deepEqual(
        audit.checks.filter((c) => !c.ok).map((c) => c.name),
        ["no payment awaits an operator's review"],
      );
      await e.database.db.query('UPDATE payments SET review_reason = NULL WHERE id = $1', [payment.id]);
    });
  }

  it('a capture for an order cancelled while the charge was in flight is refunded in full, once', async () => {
    const e = env();
    const { customer, order: o } = await order(e, 'tok_ok', 'REC', 2);
    const payment = await paymentRow(e, o.id);
    const gated = gatedProvider(e.database.db);
    const run = chargeOnce(e.database.db, gated.provider, payment.id);
    await gated.reached;
    await e.client.ok(endpoints.cancelOrder, {
      token: customer.token,
      idempotencyKey: `inflight-${o.id}`,
      params: { id: o.id },
    });
    gated.open();
    await run;
    assert.equal((await paymentRow(e, o.id)).review_reason, null);
    const [refund] = await e.database.db.query<{ id: string }>(
      "SELECT id FROM refunds WHERE payment_id = $1 AND status = 'pending'",
      [payment.id],
    );
    assert.ok(refund, 'a refund is requested');
    const said: unknown[] = [];
    const log = {
      error: (fields: unknown) => {
        said.push(fields);
      },
      warn: (fields: unknown) => {
        said.push(fields);
      },
      info: () => {},
    } as never;
    await refundOnce(e.database.db, createSandboxProvider(e.database.db), refund.id, { log });
    assert.deepEqual(said, [], 'a refund that went through is neither an error nor a warning');
    assert.equal((await paymentRow(e, o.id)).status, 'refunded');
    // The refund job delivered again: it finds the refund settled and does nothing (it does not
    // even ask the processor again, or count an attempt).
    let asked = 0;
    const counting = createSandboxProvider(e.database.db);
    await refundOnce(
      e.database.db,
      {
        ...counting,
        refund: (r) => {
          asked++;
          return counting.refund(r);
        },
      },
      refund.id,
    );
    assert.equal(asked, 0, 'the processor was not asked again');
    assert.deepEqual(await e.database.db.query('SELECT status, attempts FROM refunds WHERE id = $1', [refund.id]), [
      { status: 'succeeded', attempts: 1 },
    ]);
    // The processor's id of the refund is kept (staff look it up at the processor with it).
    const [kept] = await e.database.db.query<{ provider_ref: string | null }>(
      'SELECT provider_ref FROM refunds WHERE id = $1',
      [refund.id],
    );
    const [sandboxRefund] = await e.database.db.query<{ id: string }>(
      'SELECT r.id FROM sandbox_refunds r JOIN sandbox_charges c ON c.id = r.charge_id WHERE c.order_id = $1',
      [o.id],
    );
    assert.equal(kept!.provider_ref, sandboxRefund!.id);
    const [charge] = await sandboxChargesFor(e, o.id);
    assert.equal(charge!.refunded_amount, charge!.amount);
    assert.equal(await ledgerRefunds(e, payment.id), 1);
    await assertBooksBalance(e);
  });

  it('a refund the processor confirms for another amount is not recorded as done: no ledger refund, flagged for an operator', async () => {
    const e = env();
    const { order: o, payment, sandbox, refund } = await refundToSend(e);
    const shortChanging: PaymentProvider = {
      ...sandbox,
      refund: async (r) => {
        const result = await sandbox.refund(r);
        return result.status === 'succeeded'
          ? { ...result, refunded: { amount: 1, currency: r.amount.currency } }
          : result;
      },
    };
    const logged: unknown[] = [];
    const log = {
      error: (fields: unknown) => {
        logged.push(fields);
      },
      warn: () => {},
      info: () => {},
    } as never;
    await refundOnce(e.database.db, shortChanging, refund!.id, { log });
    assert.equal(logged.length, 1);
    assert.deepEqual(
      { ...(logged[0] as object), reason: undefined },
      { refundId: refund!.id, paymentId: payment.id, reason: undefined },
    );
    assert.match((logged[0] as { reason: string }).reason, /refunded .*1 EUR instead of 900 EUR/);
    const [row] = await e.database.db.query<{ status: string; failure: string }>(
      'SELECT status, failure FROM refunds WHERE id = $1',
      [refund!.id],
    );
    assert.deepEqual(row, { status: 'failed', failure: 'refund_unconfirmed' });
    assert.equal((await paymentRow(e, o.id)).status, 'succeeded');
    assert.match((await paymentRow(e, o.id)).review_reason ?? '', /refunded .*1 EUR instead of 900 EUR/);
    assert.equal(await ledgerRefunds(e, payment.id), 0);
    await e.database.db.query('UPDATE payments SET review_reason = NULL WHERE id = $1', [payment.id]);
  });

  it('a charge the processor confirms for another amount is not a payment: the order fails, its stock is released, nothing is posted, and it is logged for an operator', async () => {
    const e = env();
    const { customer, order: o } = await order(e, 'tok_ok', 'REC', 2);
    const payment = await paymentRow(e, o.id);
    const sandbox = createSandboxProvider(e.database.db);
    const stockBefore = await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'REC' } });
    const shortCharging: PaymentProvider = {
      ...sandbox,
      charge: async (r) => {
        const result = await sandbox.charge(r);
        return result.status === 'succeeded'
          ? { ...result, charged: { amount: 1, currency: r.amount.currency } }
          : result;
      },
    };
    const logged: unknown[] = [];
    const log = {
      error: (fields: unknown) => {
        logged.push(fields);
      },
      warn: () => {},
      info: () => {},
    } as never;
    await chargeOnce(e.database.db, shortCharging, payment.id, { log });
    assert.equal(logged.length, 1);
    assert.deepEqual(
      { ...(logged[0] as object), reason: undefined },
      { paymentId: payment.id, orderId: o.id, reason: undefined },
    );
    assert.match((logged[0] as { reason: string }).reason, /charged 1 EUR instead of 1800 EUR/);
    assert.equal(
      (await e.client.ok(endpoints.getOrder, { token: customer.token, params: { id: o.id } })).status,
      'payment_failed',
    );
    const row = await paymentRow(e, o.id);
    assert.equal(row.status, 'failed');
    assert.match(row.review_reason ?? '', /charged 1 EUR instead of 1800 EUR/);
    const stockAfter = await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'REC' } });
    assert.deepEqual(stockAfter, {
      ...stockBefore,
      reserved: stockBefore.reserved - 2,
      available: stockBefore.available + 2,
    });
    assert.equal(
      (await e.database.db.query('SELECT 1 FROM ledger_transactions WHERE payment_id = $1', [payment.id])).length,
      0,
    );
    await e.database.db.query('UPDATE payments SET review_reason = NULL WHERE id = $1', [payment.id]);
  });

  it("a success in another currency or for another order is a mismatch too; a decline's text is kept for staff up to 1,000 characters", async () => {
    const e = env();
    const sandbox = createSandboxProvider(e.database.db);
    const answering = (change: (r: Parameters<PaymentProvider['charge']>[0]) => object): PaymentProvider => ({
      ...sandbox,
      charge: async (r) => {
        const result = await sandbox.charge(r);
        return result.status === 'succeeded' ? { ...result, ...change(r) } : result;
      },
    });
    const cases = [
      {
        provider: answering((r) => ({ charged: { amount: r.amount.amount, currency: 'USD' } })),
        review: /charged 900 USD instead of 900 EUR/,
      },
      {
        provider: answering(() => ({ orderId: 'ord_someone_else' })),
        review: /for order ord_someone_else instead of ord_/,
      },
    ];
    for (const { provider, review } of cases) {
      const { order: o } = await order(e, 'tok_ok', 'REC');
      const payment = await paymentRow(e, o.id);
      await chargeOnce(e.database.db, provider, payment.id);
      const row = await paymentRow(e, o.id);
      assert.equal(row.status, 'failed');
      assert.match(row.review_reason ?? '', review);
      await e.database.db.query('UPDATE payments SET review_reason = NULL WHERE id = $1', [payment.id]);
    }
    for (const [detail, kept] of [
      ['x'.repeat(1000), 'x'.repeat(1000)],
      ['y'.repeat(5000), `${'y'.repeat(1000)}…`],
    ] as const) {
      const { order: o } = await order(e, 'tok_ok', 'REC');
      const payment = await paymentRow(e, o.id);
      await chargeOnce(
        e.database.db,
        { ...sandbox, charge: async () => ({ status: 'declined', reason: 'do_not_honor', detail }) },
        payment.id,
      );
      const [row] = await e.database.db.query<{ status: string; failure: string; processor_message: string }>(
        'SELECT status, failure, processor_message FROM payments WHERE id = $1',
        [payment.id],
      );
      assert.deepEqual(row, { status: 'failed', failure: 'do_not_honor', processor_message: kept });
    }
  });

  it('a processor call that throws is a fault: the charge is to be tried again, the payment stays pending with its attempt counted, and it is logged', async () => {
    const e = env();
    const { order: o } = await order(e, 'tok_ok', 'REC');
    const payment = await paymentRow(e, o.id);
    const sandbox = createSandboxProvider(e.database.db);
    const logged: unknown[] = [];
    const log = {
      error: (fields: unknown) => {
        logged.push(fields);
      },
      warn: () => {},
      info: () => {},
    } as never;
    const throwing: PaymentProvider = {
      ...sandbox,
      charge: async () => {
        throw new Error('socket hang up');
      },
    };
    await assert.rejects(chargeOnce(e.database.db, throwing, payment.id, { log }), /socket hang up/);
    assert.deepEqual(
      logged.map((f) => (f as { paymentId: string }).paymentId),
      [payment.id],
    );
    assert.deepEqual(await e.database.db.query('SELECT status, attempts FROM payments WHERE id = $1', [payment.id]), [
      { status: 'pending', attempts: 1 },
    ]);
    await chargeOnce(e.database.db, sandbox, payment.id);
    assert.equal((await paymentRow(e, o.id)).status, 'succeeded');
  });

  it('a refund the processor answers "try again later" stays pending with nothing posted, and goes through on the next run', async () => {
    const e = env();
    const { order: o, payment, sandbox, refund } = await refundToSend(e);
    const busy: PaymentProvider = { ...sandbox, refund: async () => ({ status: 'retryable', reason: 'rate_limited' }) };
    await assert.rejects(refundOnce(e.database.db, busy, refund!.id), /rate_limited/);
    assert.deepEqual(await e.database.db.query('SELECT status, attempts FROM refunds WHERE id = $1', [refund!.id]), [
      { status: 'pending', attempts: 1 },
    ]);
    assert.equal((await paymentRow(e, o.id)).status, 'succeeded');
    assert.equal(await ledgerRefunds(e, payment.id), 0);
    await refundOnce(e.database.db, sandbox, refund!.id);
    assert.equal((await paymentRow(e, o.id)).status, 'refunded');
    // (Not the whole audit: the mismatch tests above leave processor charges the ledger never took.)
    assert.equal(await ledgerRefunds(e, payment.id), 1);
  });

  it('a refund the processor confirms in another currency is not recorded as done either', async () => {
    const e = env();
    const { order: o, payment, sandbox, refund } = await refundToSend(e);
    const otherCurrency: PaymentProvider = {
      ...sandbox,
      refund: async (r) => {
        const result = await sandbox.refund(r);
        return result.status === 'succeeded'
          ? { ...result, refunded: { amount: r.amount.amount, currency: 'USD' } }
          : result;
      },
    };
    await refundOnce(e.database.db, otherCurrency, refund!.id);
    const [row] = await e.database.db.query<{ status: string; failure: string }>(
      'SELECT status, failure FROM refunds WHERE id = $1',
      [refund!.id],
    );
    assert.deepEqual(row, { status: 'failed', failure: 'refund_unconfirmed' });
    assert.match((await paymentRow(e, o.id)).review_reason ?? '', /900 USD instead of 900 EUR/);
    assert.equal(await ledgerRefunds(e, payment.id), 0);
    await e.database.db.query('UPDATE payments SET review_reason = NULL WHERE id = $1', [payment.id]);
  });

  it('a refund the processor declines is failed with its reason and logged as a warning: no ledger refund, the payment stays captured', async () => {
    const e = env();
    const { order: o, payment, sandbox, refund } = await refundToSend(e);
    const declining: PaymentProvider = {
      ...sandbox,
      refund: async () => ({
        status: 'declined',
        reason: 'insufficient_funds',
        detail: 'the merchant balance is too low',
      }),
    };
    const warned: unknown[] = [];
    const errors: unknown[] = [];
    const log = {
      error: (fields: unknown) => {
        errors.push(fields);
      },
      warn: (fields: unknown) => {
        warned.push(fields);
      },
      info: () => {},
    } as never;
    await refundOnce(e.database.db, declining, refund!.id, { log });
    assert.deepEqual(warned, [
      {
        refundId: refund!.id,
        paymentId: payment.id,
        reason: 'insufficient_funds',
        detail: 'the merchant balance is too low',
      },
    ]);
    assert.deepEqual(errors, [], 'a decline is an answer, not a fault or a review');
    const [row] = await e.database.db.query<{ status: string; failure: string }>(
      'SELECT status, failure FROM refunds WHERE id = $1',
      [refund!.id],
    );
    assert.deepEqual(row, { status: 'failed', failure: 'insufficient_funds' });
    assert.equal((await paymentRow(e, o.id)).status, 'succeeded');
    assert.equal((await paymentRow(e, o.id)).review_reason, null);
    assert.equal(await ledgerRefunds(e, payment.id), 0);
  });
});

forEachEngine('the expiry of unpaid orders', 'parity', (env) => {
  it('an order paid while the expiry waits for its lock stays paid, and the expiry counts nothing and logs no error', async (t) => {
    const e = env();
    if (e.database.engine !== 'postgres') {
      t.skip('needs a second connection to hold the lock (PostgreSQL)');
      return;
    }
    await e.product([{ sku: 'RACE', stock: 10, amount: 2500 }]);
    const c = await e.customer();
    const placed = await e.client.ok(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: 'expiry-race',
      body: { lines: [{ sku: 'RACE', quantity: 1 }], payment: { method: 'card', token: 'tok_ok' } },
    });
    await e.database.db.query("UPDATE orders SET created_at = now() - interval '2 hours' WHERE id = $1", [placed.id]);
    const errors: unknown[] = [];
    const log = {
      error: (...args: unknown[]) => {
        errors.push(args);
      },
      warn: () => {},
      info: () => {},
    } as never;
    let expiring: Promise<number> | undefined;
    // The payment's transaction holds the order: the expiry has chosen it, and waits for the lock.
    await e.database.db.transaction(async (tx) => {
      await tx.query('SELECT id FROM orders WHERE id = $1 FOR UPDATE', [placed.id]);
      expiring = expireUnpaidOrders(e.database.db, 3600, { log });
      await waitFor("the expiry to wait for the order's lock", async () => {
        const [row] = await e.database.db.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        );
        return row!.n > 0 ? true : undefined;
      });
      await tx.query("UPDATE orders SET status = 'paid' WHERE id = $1", [placed.id]);
    });
    assert.equal(await expiring, 0, 'nothing was cancelled');
    assert.deepEqual(errors, [], 'a paid order is passed over, not an error');
    assert.equal((await e.client.ok(endpoints.getOrder, { token: c.token, params: { id: placed.id } })).status, 'paid');
  });
});
