import { it } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine } from './support/app.ts';
import { endpoints } from '../src/client.ts';
import { assertStockExplained } from './support/stock.ts';
import { limits } from '../src/modules/orders/schemas.ts';

const card = { method: 'card' as const, token: 'tok_ok' };
let keys = 0;
const key = () => `order-test-${++keys}`;

forEachEngine('orders', 'parity', (env) => {
  it('places an order: prices from the catalog frozen on its lines, stock reserved, pending_payment', async () => {
    const { client, adminToken, customer } = env();
    await env().product(
      [
        { sku: 'MUG', stock: 100, amount: 1250 },
        { sku: 'CAP', stock: 4, amount: 800 },
      ],
      'Merch',
    );
    const c = await customer();
    const res = await client.call(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: {
        lines: [
          { sku: 'MUG', quantity: 2 },
          { sku: 'CAP', quantity: 1 },
        ],
        payment: card,
      },
    });
    assert.equal(res.status, 201);
    assert.ok(res.ok);
    assert.match(res.body.id, /^ord_/);
    assert.equal(res.body.status, 'pending_payment');
    assert.deepEqual(res.body.lines, [
      {
        sku: 'MUG',
        quantity: 2,
        unitPrice: { amount: 1250, currency: 'EUR' },
        total: { amount: 2500, currency: 'EUR' },
      },
      { sku: 'CAP', quantity: 1, unitPrice: { amount: 800, currency: 'EUR' }, total: { amount: 800, currency: 'EUR' } },
    ]);
    assert.deepEqual(res.body.total, { amount: 3300, currency: 'EUR' });
    assert.deepEqual(await client.ok(endpoints.getStock, { token: adminToken, params: { sku: 'MUG' } }), {
      sku: 'MUG',
      onHand: 100,
      reserved: 2,
      available: 98,
    });
    // A later price change does not touch the order.
    const merch = (await client.ok(endpoints.listProducts, {})).data.find((p) => p.name === 'Merch')!;
    await client.ok(endpoints.updateProduct, {
      token: adminToken,
      params: { id: merch.id },
      body: { variants: [{ sku: 'MUG', price: { amount: 9999, currency: 'EUR' } }] },
    });
    const again = await client.ok(endpoints.getOrder, { token: c.token, params: { id: res.body.id } });
    assert.equal(again.total.amount, 3300);
    await client.ok(endpoints.updateProduct, {
      token: adminToken,
      params: { id: merch.id },
      body: { variants: [{ sku: 'MUG', price: { amount: 1250, currency: 'EUR' } }] },
    });
  });

  it('merges two lines naming the same SKU before the stock check, so they cannot oversell together', async () => {
    const { client, adminToken, customer, database } = env();
    const c = await customer();
    // CAP has 4; 3 + 2 would pass two separate checks of 4 but not one of 5.
    const res = await client.call(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: {
        lines: [
          { sku: 'CAP', quantity: 2 },
          { sku: 'CAP', quantity: 2 },
        ],
        payment: card,
      },
    });
    assert.equal(res.status, 409);
    assert.equal(res.body.code, 'out_of_stock');
    const ok = await client.ok(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: {
        lines: [
          { sku: 'CAP', quantity: 1 },
          { sku: 'MUG', quantity: 1 },
          { sku: 'CAP', quantity: 2 },
        ],
        payment: card,
      },
    });
    assert.deepEqual(
      ok.lines.map((l) => [l.sku, l.quantity]),
      [
        ['CAP', 3],
        ['MUG', 1],
      ],
    );
    assert.equal((await client.ok(endpoints.getStock, { token: adminToken, params: { sku: 'CAP' } })).available, 0);
    await assertStockExplained(database.db);
  });

  it('answers out_of_stock with the line at fault and reserves nothing from the other lines', async () => {
    const { client, adminToken, customer, database } = env();
    const c = await customer();
    const before = await client.ok(endpoints.getStock, { token: adminToken, params: { sku: 'MUG' } });
    const res = await client.call(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: {
        lines: [
          { sku: 'MUG', quantity: 1 },
          { sku: 'CAP', quantity: 1 },
        ],
        payment: card,
      },
    });
    assert.equal(res.status, 409);
    assert.ok(!res.ok);
    assert.equal(res.body.code, 'out_of_stock');
    assert.deepEqual(res.body.errors, [{ path: '/lines/1/quantity', message: 'only 0 available' }]);
    assert.match(res.body.detail ?? '', /CAP has 0 available, 1 requested/);
    assert.deepEqual(await client.ok(endpoints.getStock, { token: adminToken, params: { sku: 'MUG' } }), before);
    await assertStockExplained(database.db);
  });

  it('answers unknown_sku for a SKU that does not exist or is inactive, and currency_mismatch across currencies', async () => {
    const { client, adminToken, customer } = env();
    const c = await customer();
    const unknown = await client.call(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: {
        lines: [
          { sku: 'MUG', quantity: 1 },
          { sku: 'GHOST', quantity: 1 },
        ],
        payment: card,
      },
    });
    assert.equal(unknown.status, 422);
    assert.equal(unknown.body.code, 'unknown_sku');
    assert.deepEqual(unknown.body.errors, [{ path: '/lines/1/sku', message: 'unknown SKU GHOST' }]);
    const twoUnknown = await client.call(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: {
        lines: [
          { sku: 'GHOST-1', quantity: 1 },
          { sku: 'MUG', quantity: 1 },
          { sku: 'GHOST-2', quantity: 1 },
        ],
        payment: card,
      },
    });
    assert.equal(twoUnknown.status, 422);
    assert.equal(twoUnknown.body.detail, 'unknown SKU GHOST-1; unknown SKU GHOST-2');
    assert.deepEqual(
      twoUnknown.body.errors?.map((e) => e.path),
      ['/lines/0/sku', '/lines/2/sku'],
    );
    const hidden = await env().product([{ sku: 'HIDDEN', stock: 5 }]);
    await client.ok(endpoints.updateProduct, { token: adminToken, params: { id: hidden.id }, body: { active: false } });
    const inactive = await client.call(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: { lines: [{ sku: 'HIDDEN', quantity: 1 }], payment: card },
    });
    assert.equal(inactive.status, 422);
    await env().product([{ sku: 'USD-ITEM', stock: 5, currency: 'USD' }]);
    const mixed = await client.call(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: {
        lines: [
          { sku: 'USD-ITEM', quantity: 1 },
          { sku: 'MUG', quantity: 1 },
        ],
        payment: card,
      },
    });
    assert.equal(mixed.status, 422);
    assert.equal(mixed.body.code, 'currency_mismatch');
    assert.equal(mixed.body.detail, 'The lines are priced in EUR and USD; an order has one currency');
  });

  it('answers 400 for a line beyond the quantity limit (as the schema says), 422 limit_exceeded beyond the limits once lines are merged, and 400 for a malformed order', async () => {
    const { client, customer } = env();
    const c = await customer();
    const tooMuch = await client.call(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: { lines: [{ sku: 'MUG', quantity: limits.quantityPerLine + 1 }], payment: card },
    });
    assert.equal(tooMuch.status, 400);
    assert.equal(tooMuch.body.code, 'validation_failed');
    assert.deepEqual(tooMuch.body.errors, [
      { path: '/lines/0/quantity', message: `must be <= ${limits.quantityPerLine}` },
    ]);
    // Lines of one SKU count together, and the path names the first of them; a line within the
    // limit is not named.
    const half = limits.quantityPerLine / 2;
    const merged = await client.call(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: {
        lines: [
          { sku: 'CAP', quantity: 1 },
          { sku: 'MUG', quantity: half },
          { sku: 'CAP', quantity: 1 },
          { sku: 'MUG', quantity: half + 1 },
        ],
        payment: card,
      },
    });
    assert.equal(merged.status, 422);
    assert.deepEqual(merged.body.errors, [{ path: '/lines/1/quantity', message: `at most ${limits.quantityPerLine}` }]);
    const atLimit = await client.call(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: { lines: [{ sku: 'MUG', quantity: limits.quantityPerLine }], payment: card },
    });
    assert.equal(atLimit.status, 409, 'the limit itself is allowed: refused only for the stock');
    assert.equal(atLimit.body.code, 'out_of_stock');
    const lines = Array.from({ length: limits.linesPerOrder + 1 }, (_, i) => ({ sku: `SKU-${i}`, quantity: 1 }));
    const tooMany = await client.call(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: { lines, payment: card },
    });
    assert.equal(tooMany.status, 422);
    assert.equal(tooMany.body.code, 'limit_exceeded');
    assert.equal(tooMany.body.detail, `An order may name at most ${limits.linesPerOrder} SKUs`);
    assert.deepEqual(tooMany.body.errors, [
      { path: '/lines', message: `at most ${limits.linesPerOrder} distinct SKUs` },
    ]);
    // The same SKU named more times than that is one line, not too many.
    const oneSku = await client.call(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: {
        lines: Array.from({ length: limits.linesPerOrder + 1 }, () => ({ sku: 'GHOST-SKU', quantity: 1 })),
        payment: card,
      },
    });
    assert.equal(oneSku.status, 422);
    assert.equal(oneSku.body.code, 'unknown_sku');
    for (const body of [
      { lines: [], payment: card },
      { lines: [{ sku: 'MUG', quantity: 0 }], payment: card },
      { lines: [{ sku: 'MUG', quantity: 1 }], payment: { method: 'cash', token: 'x' } },
      // A NUL cannot be stored in PostgreSQL text: refused up front, not a 500 from the insert.
      { lines: [{ sku: 'MUG', quantity: 1 }], payment: { method: 'card', token: 'tok_\u0000' } },
      { lines: [{ sku: 'MUG', quantity: 1 }], payment: { method: 'card', token: 'tok ok' } },
    ]) {
      const res = await client.call(endpoints.placeOrder, {
        token: c.token,
        idempotencyKey: key(),
        body: body as never,
      });
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.body.code, 'validation_failed');
    }
  });

  it("shows a customer only their own orders (another customer's id is 404); staff see all and filter by status", async () => {
    const { client, adminToken, customer } = env();
    const a = await customer();
    const b = await customer();
    const mine = await client.ok(endpoints.placeOrder, {
      token: a.token,
      idempotencyKey: key(),
      body: { lines: [{ sku: 'MUG', quantity: 1 }], payment: card },
    });
    const theirs = await client.ok(endpoints.placeOrder, {
      token: b.token,
      idempotencyKey: key(),
      body: { lines: [{ sku: 'MUG', quantity: 1 }], payment: card },
    });
    const listA = await client.ok(endpoints.listOrders, { token: a.token });
    assert.deepEqual(
      listA.data.map((o) => o.id),
      [mine.id],
    );
    const peek = await client.call(endpoints.getOrder, { token: a.token, params: { id: theirs.id } });
    assert.equal(peek.status, 404);
    assert.equal(
      (await client.call(endpoints.getOrder, { token: a.token, params: { id: 'ord_doesnotexist00000000000' } })).status,
      404,
    );
    const cancelTheirs = await client.call(endpoints.cancelOrder, {
      token: a.token,
      idempotencyKey: key(),
      params: { id: theirs.id },
    });
    assert.equal(cancelTheirs.status, 404);
    const staff = await client.ok(endpoints.listOrders, {
      token: adminToken,
      query: { status: 'pending_payment', limit: 100 },
    });
    assert.ok(staff.data.some((o) => o.id === mine.id) && staff.data.some((o) => o.id === theirs.id));
    assert.ok(staff.data.every((o) => o.status === 'pending_payment'));
  });

  it('pages orders newest first without repeating or skipping while new orders arrive', async () => {
    const { client, customer } = env();
    const c = await customer();
    const placed: string[] = [];
    for (let i = 0; i < 5; i++)
      placed.push(
        (
          await client.ok(endpoints.placeOrder, {
            token: c.token,
            idempotencyKey: key(),
            body: { lines: [{ sku: 'MUG', quantity: 1 }], payment: card },
          })
        ).id,
      );
    const first = await client.ok(endpoints.listOrders, { token: c.token, query: { limit: 2 } });
    await client.ok(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: { lines: [{ sku: 'MUG', quantity: 1 }], payment: card },
    });
    const second = await client.ok(endpoints.listOrders, {
      token: c.token,
      query: { limit: 2, cursor: first.nextCursor! },
    });
    const third = await client.ok(endpoints.listOrders, {
      token: c.token,
      query: { limit: 2, cursor: second.nextCursor! },
    });
    assert.deepEqual(
      [...first.data, ...second.data, ...third.data].map((o) => o.id),
      [...placed].reverse(),
    );
    assert.equal(third.nextCursor, null);
  });

  it('cancels a pending order and releases its reservation; the state machine refuses what it does not allow', async () => {
    const { client, adminToken, customer, database } = env();
    const c = await customer();
    const before = await client.ok(endpoints.getStock, { token: adminToken, params: { sku: 'MUG' } });
    const order = await client.ok(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: { lines: [{ sku: 'MUG', quantity: 3 }], payment: card },
    });
    const cancelled = await client.call(endpoints.cancelOrder, {
      token: c.token,
      idempotencyKey: key(),
      params: { id: order.id },
    });
    assert.equal(cancelled.status, 200);
    assert.equal(cancelled.ok && cancelled.body.status, 'cancelled');
    assert.deepEqual(await client.ok(endpoints.getStock, { token: adminToken, params: { sku: 'MUG' } }), before);
    const twice = await client.call(endpoints.cancelOrder, {
      token: c.token,
      idempotencyKey: key(),
      params: { id: order.id },
    });
    assert.equal(twice.status, 409);
    assert.equal(twice.body.code, 'invalid_state');
    const fulfil = await client.call(endpoints.fulfilOrder, { token: adminToken, params: { id: order.id } });
    assert.equal(fulfil.status, 409);
    assert.equal(fulfil.body.code, 'invalid_state');
    const pending = await client.ok(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: { lines: [{ sku: 'MUG', quantity: 1 }], payment: card },
    });
    assert.equal(
      (await client.call(endpoints.fulfilOrder, { token: adminToken, params: { id: pending.id } })).status,
      409,
      'an unpaid order is not fulfilled',
    );
    assert.equal(
      (await client.call(endpoints.fulfilOrder, { token: c.token, params: { id: pending.id } })).status,
      403,
    );
    assert.equal(
      (await client.call(endpoints.cancelOrder, { token: c.token, params: { id: pending.id } })).status,
      400,
      'cancel needs an Idempotency-Key',
    );
    // Staff may cancel anyone's order.
    assert.equal(
      (
        await client.call(endpoints.cancelOrder, {
          token: adminToken,
          idempotencyKey: key(),
          params: { id: pending.id },
        })
      ).status,
      200,
    );
    await assertStockExplained(database.db);
  });

  it('fulfils a paid order (staff only)', async () => {
    const { client, adminToken, customer, database } = env();
    const c = await customer();
    const order = await client.ok(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: key(),
      body: { lines: [{ sku: 'MUG', quantity: 1 }], payment: card },
    });
    await database.db.query("UPDATE orders SET status = 'paid' WHERE id = $1", [order.id]);
    const done = await client.ok(endpoints.fulfilOrder, { token: adminToken, params: { id: order.id } });
    assert.equal(done.status, 'fulfilled');
    // The answer and the order.fulfilled event carry the order with its lines.
    assert.deepEqual(done.lines, order.lines);
    const [event] = await database.db.query<{ data: { order: { status: string; lines: unknown[] } } }>(
      "SELECT data FROM events WHERE type = 'order.fulfilled' AND data->'order'->>'id' = $1",
      [order.id],
    );
    assert.equal(event?.data.order.status, 'fulfilled');
    assert.deepEqual(event.data.order.lines, order.lines);
  });
});
