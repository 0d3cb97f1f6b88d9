// The API behind the console's order and stock pages: the staff order list and its filters, an
// order's history (kept past event retention), payments with refunds, ledger entries, stock
// movements, and the stock list.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine, type TestEnv } from './support/app.ts';
import { endpoints } from '../src/client.ts';
import { waitFor } from './support/wait.ts';

let n = 0;
const key = () => `console-api-${++n}`;

async function place(env: TestEnv, token: string, sku: string, card = 'tok_ok') {
  return env.client.ok(endpoints.placeOrder, {
    token,
    idempotencyKey: key(),
    body: { lines: [{ sku, quantity: 1 }], payment: { method: 'card', token: card } },
  });
}

async function statusOf(env: TestEnv, id: string, statuses: string[]) {
  return waitFor(`order ${id} to become ${statuses.join(' or ')}`, async () => {
    const o = await env.client.ok(endpoints.getOrder, { token: env.adminToken, params: { id } });
    return statuses.includes(o.status) ? o : undefined;
  });
}

forEachEngine(
  'orders-console-api',
  'parity',
  (env) => {
    it('staff filter orders by status, customer email, date range and id, newest first, page by page', async () => {
      const e = env();
      await e.product([{ sku: 'LIST-A', stock: 100, amount: 500 }]);
      const alice = await e.customer('Alice');
      const bob = await e.customer('Bob');
      const a1 = await place(e, alice.token, 'LIST-A');
      const a2 = await place(e, alice.token, 'LIST-A');
      const b1 = await place(e, bob.token, 'LIST-A', 'tok_decline');
      await statusOf(e, b1.id, ['payment_failed']);
      const admin = e.adminToken;

      const byEmail = await e.client.ok(endpoints.listOrders, {
        token: admin,
        query: { customerEmail: alice.email.toUpperCase() },
      });
      assert.deepEqual(
        byEmail.data.map((o) => o.id),
        [a2.id, a1.id],
      );
      const firstPage = await e.client.ok(endpoints.listOrders, {
        token: admin,
        query: { customerEmail: alice.email, limit: 1 },
      });
      assert.deepEqual(
        firstPage.data.map((o) => o.id),
        [a2.id],
      );
      const second = await e.client.ok(endpoints.listOrders, {
        token: admin,
        query: { customerEmail: alice.email, limit: 1, cursor: firstPage.nextCursor! },
      });
      assert.deepEqual(
        second.data.map((o) => o.id),
        [a1.id],
      );
      assert.equal(second.nextCursor, null);

      const failed = await e.client.ok(endpoints.listOrders, { token: admin, query: { status: 'payment_failed' } });
      assert.ok(failed.data.some((o) => o.id === b1.id));
      assert.ok(failed.data.every((o) => o.status === 'payment_failed'));
      assert.deepEqual(
        (await e.client.ok(endpoints.listOrders, { token: admin, query: { id: a1.id } })).data.map((o) => o.id),
        [a1.id],
      );
      assert.deepEqual(
        (await e.client.ok(endpoints.listOrders, { token: admin, query: { customerEmail: 'nobody@test.example' } }))
          .data,
        [],
      );

      const from = new Date(Date.parse(a1.createdAt)).toISOString();
      const to = new Date(Date.parse(b1.createdAt)).toISOString();
      const ranged = await e.client.ok(endpoints.listOrders, {
        token: admin,
        query: { createdFrom: from, createdTo: to, limit: 100 },
      });
      assert.ok(
        ranged.data.some((o) => o.id === a1.id) && ranged.data.some((o) => o.id === a2.id),
        'from is inclusive',
      );
      assert.ok(!ranged.data.some((o) => o.id === b1.id), 'to is exclusive');
      const bad = await e.client.call(endpoints.listOrders, { token: admin, query: { createdFrom: 'yesterday' } });
      assert.equal(bad.status, 400);
    });

    it('a customer still sees only their own orders, whatever email they filter by', async () => {
      const e = env();
      const alice = await e.customer('Alice');
      const bob = await e.customer('Bob');
      const own = await place(e, alice.token, 'LIST-A');
      await place(e, bob.token, 'LIST-A');
      assert.deepEqual(
        (await e.client.ok(endpoints.listOrders, { token: alice.token, query: { customerEmail: bob.email } })).data,
        [],
      );
      assert.deepEqual(
        (
          await e.client.ok(endpoints.listOrders, { token: alice.token, query: { customerEmail: alice.email } })
        ).data.map((o) => o.id),
        [own.id],
      );
      const all = await e.client.ok(endpoints.listOrders, { token: alice.token, query: { limit: 100 } });
      assert.ok(all.data.every((o) => o.customerId === alice.id));
    });

    it('an order page: history of every transition, payment with its charge and refund, ledger entries and stock movements', async () => {
      const e = env();
      const c = await e.customer();
      const o = await place(e, c.token, 'LIST-A');
      await statusOf(e, o.id, ['paid']);
      await e.client.ok(endpoints.cancelOrder, { token: e.adminToken, idempotencyKey: key(), params: { id: o.id } });
      const [payment] = await waitFor('the refund', async () => {
        const { data } = await e.client.ok(endpoints.listOrderPayments, { token: e.adminToken, params: { id: o.id } });
        // The payment and its refund are read by two statements: wait for both to show the refund's
        // transaction (one read may fall between its commit and the other's).
        return data[0]?.refund?.status === 'succeeded' && data[0].status === 'refunded' ? data : undefined;
      });
      assert.equal(payment!.status, 'refunded');
      assert.match(payment!.providerRef ?? '', /^sch_/);
      assert.deepEqual(payment!.refund!.amount, { amount: 500, currency: 'EUR' });
      assert.ok(payment!.refund!.providerRef);
      // The customer sees their payment, not the processor's ids or the refund record.
      const [own] = (await e.client.ok(endpoints.listOrderPayments, { token: c.token, params: { id: o.id } })).data;
      assert.equal(own!.providerRef, undefined);
      assert.equal(own!.refund, undefined);

      // The history survives the events' pruning: it is its own table.
      await e.database.db.transaction(async (tx) => {
        await tx.query(`DELETE FROM emails WHERE event_id IN (SELECT id FROM events WHERE data->'order'->>'id' = $1)`, [
          o.id,
        ]);
        await tx.query(`DELETE FROM events WHERE data->'order'->>'id' = $1`, [o.id]);
      });
      const history = await e.client.ok(endpoints.listOrderHistory, { token: c.token, params: { id: o.id } });
      assert.deepEqual(
        history.data.map((h) => [h.from, h.to]),
        [
          [null, 'pending_payment'],
          ['pending_payment', 'paid'],
          ['paid', 'cancelled'],
        ],
      );

      const ledger = await e.client.ok(endpoints.listOrderLedgerEntries, { token: e.adminToken, params: { id: o.id } });
      assert.deepEqual(
        ledger.data.map((l) => [l.kind, l.account, l.debit.amount, l.credit.amount]),
        [
          ['capture', 'processor_clearing', 500, 0],
          ['capture', 'sales', 0, 500],
          ['refund', 'refunds', 500, 0],
          ['refund', 'processor_clearing', 0, 500],
        ],
      );
      const moves = await e.client.ok(endpoints.listOrderStockMovements, { token: e.adminToken, params: { id: o.id } });
      assert.deepEqual(
        moves.data.map((m) => [m.sku, m.kind, m.onHandDelta, m.reservedDelta]),
        [
          ['LIST-A', 'reservation', 0, 1],
          ['LIST-A', 'sale', -1, -1],
          ['LIST-A', 'sale', 1, 0],
        ],
      );
    });

    it("another customer's order is 404 on every page of it, and the ledger and stock views are staff only", async () => {
      const e = env();
      const owner = await e.customer();
      const other = await e.customer();
      const o = await place(e, owner.token, 'LIST-A');
      assert.equal(
        (await e.client.call(endpoints.listOrderHistory, { token: other.token, params: { id: o.id } })).status,
        404,
      );
      assert.equal(
        (await e.client.call(endpoints.listOrderLedgerEntries, { token: owner.token, params: { id: o.id } })).status,
        403,
      );
      assert.equal(
        (await e.client.call(endpoints.listOrderStockMovements, { token: owner.token, params: { id: o.id } })).status,
        403,
      );
      assert.equal(
        (await e.client.call(endpoints.listOrderLedgerEntries, { token: e.adminToken, params: { id: 'ord_missing' } }))
          .status,
        404,
      );
    });

    it('lists stock of every SKU in SKU order with on hand, reserved and available, by cursor', async () => {
      const e = env();
      await e.product([
        { sku: 'STK-1', stock: 5 },
        { sku: 'STK-2', stock: 7 },
        { sku: 'STK-3', stock: 9 },
      ]);
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await e.client.ok(endpoints.listStock, {
          token: e.adminToken,
          query: { limit: 2, ...(cursor ? { cursor } : {}) },
        });
        seen.push(...page.data.map((s) => s.sku));
        for (const s of page.data) assert.equal(s.available, s.onHand - s.reserved);
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
      assert.deepEqual(seen, [...seen].sort());
      assert.ok(['STK-1', 'STK-2', 'STK-3'].every((s) => seen.includes(s)));
      const c = await e.customer();
      assert.equal((await e.client.call(endpoints.listStock, { token: c.token, query: {} })).status, 403);
      assert.equal(
        (await e.client.call(endpoints.listStock, { token: e.adminToken, query: { cursor: 'bm9wZQ' } })).status,
        400,
      );
    });
  },
  {},
  { workers: true },
);
