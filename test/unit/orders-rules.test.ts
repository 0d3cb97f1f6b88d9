// The rules of an order that need no database: the state machine's table, merging lines, the limits,
// the total, and how a batch's orders share the stock they were decided against. Property-based
// where inputs vary. (placeOrders in test/orders*.test.ts runs them against real stock rows.)
import { it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { orderStatuses, statesLeadingTo, transitions, type Status } from '../../src/modules/orders/state-machine.ts';
import { allocateStock, checkLimits, mergeLines, orderTotal } from '../../src/modules/orders/place.ts';
import { limits, maxOrderTotal, maxUnitPrice } from '../../src/limits.ts';

it('the state machine: pending_payment leads to paid, payment_failed or cancelled; paid to fulfilled or cancelled; the rest are final', () => {
  assert.deepEqual(transitions, {
    pending_payment: ['paid', 'payment_failed', 'cancelled'],
    paid: ['fulfilled', 'cancelled'],
    payment_failed: [],
    cancelled: [],
    fulfilled: [],
  });
  // No state leads to itself, and every state is reachable from pending_payment.
  for (const s of orderStatuses) assert.ok(!transitions[s].includes(s), s);
  const reached = new Set<Status>(['pending_payment']);
  for (let grew = true; grew;) {
    grew = false;
    for (const s of [...reached])
      for (const t of transitions[s])
        if (!reached.has(t)) {
          reached.add(t);
          grew = true;
        }
  }
  assert.deepEqual([...reached].sort(), [...orderStatuses].sort());
});

it('statesLeadingTo(to) is exactly the states whose row of the table names to', () => {
  fc.assert(
    fc.property(fc.constantFrom(...orderStatuses), fc.constantFrom(...orderStatuses), (from, to) => {
      assert.equal(statesLeadingTo(to).includes(from), transitions[from].includes(to));
    }),
  );
  assert.deepEqual(statesLeadingTo('cancelled'), ['pending_payment', 'paid']);
  assert.deepEqual(statesLeadingTo('pending_payment'), []);
});

const sku = fc.constantFrom('A', 'B', 'C', 'D');
const line = fc.record({ sku, quantity: fc.integer({ min: 1, max: 20 }) });

it('merging lines: one line per SKU in first-seen order, with the summed quantity and the index of its first line', () => {
  fc.assert(
    fc.property(fc.array(line, { maxLength: 12 }), (lines) => {
      const merged = mergeLines(lines);
      assert.deepEqual(
        merged.map((m) => m.sku),
        [...new Set(lines.map((l) => l.sku))],
      );
      for (const m of merged) {
        assert.equal(
          m.quantity,
          lines.filter((l) => l.sku === m.sku).reduce((a, l) => a + l.quantity, 0),
        );
        assert.equal(
          m.firstIndex,
          lines.findIndex((l) => l.sku === m.sku),
        );
      }
    }),
  );
  // The input is not changed.
  const lines = [
    { sku: 'A', quantity: 1 },
    { sku: 'A', quantity: 2 },
  ];
  mergeLines(lines);
  assert.deepEqual(lines, [
    { sku: 'A', quantity: 1 },
    { sku: 'A', quantity: 2 },
  ]);
});

it('the limits: at most linesPerOrder SKUs, at most quantityPerLine units of one, each excess named by its first line', () => {
  const many = mergeLines(Array.from({ length: limits.linesPerOrder + 1 }, (_, i) => ({ sku: `S${i}`, quantity: 1 })));
  assert.equal(checkLimits(many)?.code, 'limit_exceeded');
  assert.equal(checkLimits(many.slice(1)), null);
  const heavy = checkLimits(
    mergeLines([
      { sku: 'A', quantity: 1 },
      { sku: 'B', quantity: limits.quantityPerLine },
      { sku: 'A', quantity: limits.quantityPerLine },
    ]),
  );
  assert.equal(heavy?.code, 'limit_exceeded');
  assert.deepEqual(heavy?.extra.errors, [{ path: '/lines/0/quantity', message: `at most ${limits.quantityPerLine}` }]);
});

it('the total is the sum of price x quantity, exact up to the largest order the limits allow', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ sku, quantity: fc.integer({ min: 1, max: limits.quantityPerLine }) }), { maxLength: 4 }),
      fc.array(fc.integer({ min: 0, max: maxUnitPrice }), { minLength: 4, maxLength: 4 }),
      (lines, amounts) => {
        const prices = new Map(['A', 'B', 'C', 'D'].map((s, i) => [s, { price_amount: amounts[i]! }]));
        const total = orderTotal(lines, prices);
        assert.ok(Number.isSafeInteger(total));
        assert.equal(
          BigInt(total),
          lines.reduce((a, l) => a + BigInt(prices.get(l.sku)!.price_amount) * BigInt(l.quantity), 0n),
        );
      },
    ),
  );
  const biggest = Array.from({ length: limits.linesPerOrder }, (_, i) => ({
    sku: `S${i}`,
    quantity: limits.quantityPerLine,
  }));
  assert.equal(
    orderTotal(biggest, new Map(biggest.map((l) => [l.sku, { price_amount: maxUnitPrice }]))),
    maxOrderTotal,
  );
  assert.ok(Number.isSafeInteger(maxOrderTotal));
});

it('allocation: orders take stock in arrival order, all of an order or none, never more than there is', () => {
  const order = fc.array(line, { minLength: 1, maxLength: 4 }).map((lines) => ({ lines: mergeLines(lines) }));
  const stock = fc.record({ A: fc.nat(30), B: fc.nat(30), C: fc.nat(30) }); // D is not stocked at all
  fc.assert(
    fc.property(fc.array(order, { maxLength: 8 }), stock, (orders, s) => {
      const available = new Map(Object.entries(s));
      const before = new Map(available);
      const { placed, refused } = allocateStock(orders, available);
      assert.deepEqual(available, before, 'the map given is not changed');
      // Every order is placed or refused, once, in arrival order.
      assert.deepEqual(
        [...placed, ...refused.map((r) => r.order)].sort((a, b) => orders.indexOf(a) - orders.indexOf(b)),
        orders,
      );
      // Replaying arrival order: a placed order fits what is left; a refused one does not, and names exactly its short lines.
      const left = new Map(available);
      for (const o of orders) {
        const short = o.lines.filter((l) => (left.get(l.sku) ?? 0) < l.quantity);
        const r = refused.find((x) => x.order === o);
        if (placed.includes(o)) {
          assert.equal(short.length, 0);
          for (const l of o.lines) left.set(l.sku, left.get(l.sku)! - l.quantity);
        } else {
          assert.deepEqual(
            r?.short,
            short.map((l) => ({
              sku: l.sku,
              quantity: l.quantity,
              available: left.get(l.sku) ?? 0,
              index: l.firstIndex,
            })),
          );
        }
      }
      for (const [k, v] of left) assert.ok(v >= 0, `${k} oversold`);
    }),
  );
  // A refused order leaves its stock to the next one.
  const [big, small] = [
    { lines: mergeLines([{ sku: 'A', quantity: 3 }]) },
    { lines: mergeLines([{ sku: 'A', quantity: 2 }]) },
  ];
  const result = allocateStock([big, small], new Map([['A', 2]]));
  assert.deepEqual(result.placed, [small]);
  assert.deepEqual(result.refused, [{ order: big, short: [{ sku: 'A', quantity: 3, available: 2, index: 0 }] }]);
});
