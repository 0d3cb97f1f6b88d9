// The whole service with PAYMENT_PROVIDER=stripe, against a local fake of Stripe
// (test/support/fake-stripe.ts): orders are charged by the workers through the Stripe adapter, and
// the audit, the payments and the ledger are read through the API. The fake also plays a Stripe
// that cannot be trusted: a success for another amount, currency or order, an error whose text
// carries markup, a huge answer.
import { after, it } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine, type TestEnv } from './support/app.ts';
import { startFakeStripe } from './support/fake-stripe.ts';
import { waitFor } from './support/wait.ts';
import { assertStockExplained } from './support/stock.ts';
import { endpoints } from '../src/client.ts';

const fake = await startFakeStripe();
after(() => fake.close());

let keys = 0;

async function placeAndSettle(e: TestEnv, statuses: string[], quantity = 1) {
  const customer = await e.customer();
  const order = await e.client.ok(endpoints.placeOrder, {
    token: customer.token,
    idempotencyKey: `stripe-${++keys}`,
    body: { lines: [{ sku: 'STRIPE-TEE', quantity }], payment: { method: 'card', token: 'pm_card_visa' } },
  });
  const settled = await waitFor(`order ${order.id} to become ${statuses.join(' or ')}`, async () => {
    const o = await e.client.ok(endpoints.getOrder, { token: customer.token, params: { id: order.id } });
    return statuses.includes(o.status) ? o : undefined;
  });
  const [mine] = (await e.client.ok(endpoints.listOrderPayments, { token: customer.token, params: { id: order.id } }))
    .data;
  const [staffs] = (await e.client.ok(endpoints.listOrderPayments, { token: e.adminToken, params: { id: order.id } }))
    .data;
  return { customer, order: settled, mine: mine!, staffs: staffs! };
}

const reviewCheck = "no payment awaits an operator's review";

forEachEngine(
  'payments through Stripe',
  'parity',
  (env) => {
    it("a Stripe-paid order passes the audit: the sandbox processor's check is skipped, and says why", async () => {
      const e = env();
      await e.product([{ sku: 'STRIPE-TEE', stock: 100, amount: 4999 }]);
      const { order, mine } = await placeAndSettle(e, ['paid']);
      assert.equal(mine.status, 'succeeded');
      assert.equal(mine.provider, 'stripe');
      const audit = await e.client.ok(endpoints.audit, { token: e.adminToken });
      assert.deepEqual(
        audit.checks.filter((c) => !c.ok),
        [],
      );
      assert.equal(audit.ok, true);
      const skipped = audit.checks.filter((c) => c.skipped);
      assert.equal(skipped.length, 1);
      assert.match(skipped[0]!.name, /sandbox/);
      assert.match(skipped[0]!.skipped!, /the payment provider is stripe/);
      const [captured] = await e.database.db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM ledger_transactions WHERE order_id = $1 AND kind = 'capture'",
        [order.id],
      );
      assert.equal(captured!.n, 1);
    });

    for (const [what, tamper, seen] of [
      ['another amount (1 cent for 49.99 EUR)', { amount: 1 }, /charged 1 EUR instead of 4999 EUR/],
      ['another currency', { currency: 'usd' }, /charged 4999 USD instead of 4999 EUR/],
      [
        'a PaymentIntent of another order',
        { metadata: { orderId: 'ord_somebody_else' } },
        /for order ord_somebody_else instead of ord_/,
      ],
    ] as const) {
      it(`a "succeeded" for ${what} is not a success: the order fails, nothing is posted, an operator is told`, async () => {
        const e = env();
        const before = await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'STRIPE-TEE' } });
        fake.tamperNext(tamper);
        const { order, mine, staffs } = await placeAndSettle(e, ['paid', 'payment_failed']);
        assert.equal(order.status, 'payment_failed');
        assert.deepEqual(
          { status: mine.status, failure: mine.failure },
          { status: 'failed', failure: 'charge_unconfirmed' },
        );
        assert.ok(!('review' in mine) && !('processorMessage' in mine), 'the details are for staff');
        assert.match(staffs.review ?? '', seen);
        assert.equal(
          (await e.database.db.query('SELECT 1 FROM ledger_transactions WHERE order_id = $1', [order.id])).length,
          0,
          'nothing posted to the ledger',
        );
        assert.deepEqual(
          await e.client.ok(endpoints.getStock, { token: e.adminToken, params: { sku: 'STRIPE-TEE' } }),
          before,
          'the reservation is released',
        );
        const audit = await e.client.ok(endpoints.audit, { token: e.adminToken });
        const review = audit.checks.find((c) => c.name === reviewCheck)!;
        assert.equal(review.ok, false);
        assert.ok(review.violations.some((v) => (v as { order_id?: string }).order_id === order.id));
        assert.ok(
          e.logs.some((line) => line.includes('"level":50') && line.includes(order.id) && line.includes('operator')),
          'an error is logged',
        );
        await assertStockExplained(e.database.db);
        // Reviewed and put right by an operator: the audit passes again.
        await e.database.db.query('UPDATE payments SET review_reason = NULL WHERE order_id = $1', [order.id]);
        assert.equal((await e.client.ok(endpoints.audit, { token: e.adminToken })).ok, true);
      });
    }

    it("a decline whose text carries markup reaches the customer in our words only; staff see Stripe's", async () => {
      const e = env();
      const markup = '<script>alert("pwned")</script> Your card was declined.';
      fake.errorNext(402, {
        type: 'card_error',
        code: 'card_declined',
        decline_code: '<img src=x onerror=alert(1)>',
        message: markup,
      });
      const declined = await placeAndSettle(e, ['paid', 'payment_failed']);
      assert.equal(declined.order.status, 'payment_failed');
      assert.equal(declined.mine.failure, 'card_declined');
      assert.equal(declined.staffs.processorMessage, markup);

      fake.errorNext(400, {
        type: 'invalid_request_error',
        code: 'amount_too_small',
        message: `<a href="https://evil.example">Amount</a> must be at least 50 cents`,
      });
      const refused = await placeAndSettle(e, ['paid', 'payment_failed']);
      assert.equal(refused.mine.failure, 'refused_by_processor: amount_too_small');
      assert.match(refused.staffs.processorMessage ?? '', /evil\.example/);
      for (const { customer, order } of [declined, refused]) {
        const res = await e.client.call(endpoints.listOrderPayments, {
          token: customer.token,
          params: { id: order.id },
        });
        assert.doesNotMatch(JSON.stringify(res.body), /<|evil|alert/);
      }
    });

    it("an order paid with the sandbox's drill card keeps the queue's retry budget: the drill's short one is a sandbox rule", async () => {
      const e = env();
      await e.product([{ sku: 'STRIPE-DRILL', stock: 100, amount: 4999 }]);
      const customer = await e.customer();
      const order = await e.client.ok(endpoints.placeOrder, {
        token: customer.token,
        idempotencyKey: `stripe-${++keys}`,
        body: { lines: [{ sku: 'STRIPE-DRILL', quantity: 1 }], payment: { method: 'card', token: 'tok_drill' } },
      });
      const [job] = await e.database.db.query<{ retry_limit: number }>(
        `SELECT j.retry_limit FROM pgboss.job j JOIN payments p ON j.data->>'paymentId' = p.id
          WHERE j.name = 'payments.charge' AND p.order_id = $1`,
        [order.id],
      );
      assert.ok(job, 'the charge job is queued with the order');
      assert.ok(job.retry_limit > 2, `retry limit ${job.retry_limit}: the queue's, not the drill card's 2`);
      // Settled before the next test, which sets up the fake's next answer for its own charge.
      await waitFor(`order ${order.id} to settle`, async () => {
        const o = await e.client.ok(endpoints.getOrder, { token: customer.token, params: { id: order.id } });
        return o.status !== 'pending_payment' || undefined;
      });
    });

    it('an answer too large to read is not taken: the charge is asked again with its key, and charged once', async () => {
      const e = env();
      fake.hugeNext(1024 * 1024);
      const { order, mine } = await placeAndSettle(e, ['paid', 'payment_failed']);
      assert.equal(order.status, 'paid');
      assert.equal(mine.attempts, 2, 'the huge answer was refused, the retry read the stored one');
      assert.equal([...fake.intents.values()].filter((i) => i.metadata.orderId === order.id).length, 1);
      assert.equal((await e.client.ok(endpoints.audit, { token: e.adminToken })).ok, true);
    });
  },
  {
    PAYMENT_PROVIDER: 'stripe',
    STRIPE_SECRET_KEY: fake.secretKey,
    STRIPE_API_BASE: fake.url,
    STRIPE_TIMEOUT_MS: '5000',
  },
  { workers: true },
);
