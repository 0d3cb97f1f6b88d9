// Orders: placing one reserves its stock in the same transaction that creates it; cancelling
// releases it. The charge and the refund happen later, through the payments module.
import type { Db, Queryable, Tx } from '../../platform/db.js';
import type { Principal } from '../../platform/auth.js';
import { staffOrAbove } from '../../platform/auth.js';
import { newId } from '../../platform/ids.js';
import { AppError, type FieldError } from '../../errors.js';
import { pricesOf } from '../catalog/repo.js';
import { outOfStock, releaseReservation, reserveStock } from '../catalog/inventory.js';
import * as repo from './repo.js';
import { limits, type Order } from './schemas.js';
import { orderView } from './view.js';
import { publishOrderEvent } from './events.js';
import { requestCharge, requestRefund } from '../payments/outbox.js';
import { returnSoldStock } from '../catalog/inventory.js';
import type { Status } from './state-machine.js';

export interface PlaceOrderInput {
  lines: { sku: string; quantity: number }[];
  payment: { method: 'card'; token: string };
}

/** Lines naming the same SKU become one line with the summed quantity, in first-seen order. */
export function mergeLines(lines: { sku: string; quantity: number }[]): { sku: string; quantity: number; firstIndex: number }[] {
  const merged = new Map<string, { sku: string; quantity: number; firstIndex: number }>();
  lines.forEach((line, i) => {
    const seen = merged.get(line.sku);
    if (seen) seen.quantity += line.quantity;
    else merged.set(line.sku, { ...line, firstIndex: i });
  });
  return [...merged.values()];
}

/**
 * Creates the order, its payment request and its event, and answers it with reserveStock, the step
 * the caller must run last in the transaction (it may throw out_of_stock, which rolls the rest
 * back): the stock rows stay locked only from there to the commit, and that span bounds the
 * orders per second of a hot SKU.
 */
export async function placeOrder(tx: Tx, principal: Principal, input: PlaceOrderInput): Promise<{ order: Order; reserveStock: () => Promise<void> }> {
  const lines = mergeLines(input.lines);
  if (lines.length > limits.linesPerOrder) {
    throw new AppError('limit_exceeded', `An order may name at most ${limits.linesPerOrder} SKUs`, { errors: [{ path: '/lines', message: `at most ${limits.linesPerOrder} distinct SKUs` }] });
  }
  const tooMany = lines.filter((l) => l.quantity > limits.quantityPerLine);
  if (tooMany.length > 0) {
    throw new AppError('limit_exceeded', `At most ${limits.quantityPerLine} units of one SKU per order`, { errors: tooMany.map((l) => ({ path: `/lines/${l.firstIndex}/quantity`, message: `at most ${limits.quantityPerLine}` })) });
  }

  // Prices are read in the order's transaction and frozen on its lines.
  const prices = new Map((await pricesOf(tx, lines.map((l) => l.sku))).map((p) => [p.sku, p]));
  const unknown: FieldError[] = lines.filter((l) => !prices.get(l.sku)?.active).map((l) => ({ path: `/lines/${l.firstIndex}/sku`, message: `unknown SKU ${l.sku}` }));
  if (unknown.length > 0) throw new AppError('unknown_sku', unknown.map((u) => u.message).join('; '), { errors: unknown });
  const currencies = new Set(lines.map((l) => prices.get(l.sku)!.currency));
  if (currencies.size > 1) throw new AppError('currency_mismatch', `The lines are priced in ${[...currencies].sort().join(' and ')}; an order has one currency`);

  // Fail fast on what is plainly not there, before writing anything (a hint, read without locks).
  const plainlyShort = lines.filter((l) => prices.get(l.sku)!.available < l.quantity);
  if (plainlyShort.length > 0) {
    throw outOfStock(plainlyShort.map((l) => ({ sku: l.sku, quantity: l.quantity, available: prices.get(l.sku)!.available, index: l.firstIndex })));
  }

  const orderId = newId('ord');
  const priced = lines.map((l) => ({ sku: l.sku, quantity: l.quantity, unitAmount: prices.get(l.sku)!.price_amount }));
  const total = priced.reduce((sum, l) => sum + l.unitAmount * l.quantity, 0);
  const created = await repo.insertOrder(tx, {
    id: orderId, customerId: principal.userId, currency: [...currencies][0]!, total, paymentToken: input.payment.token,
  }, priced);
  // The charge is enqueued in this transaction: committed with the order, or not at all.
  await requestCharge(tx, created.order);
  await publishOrderEvent(tx, 'order.created', created.order, created.lines);
  return {
    order: orderView(created.order, created.lines),
    reserveStock: () => reserveStock(tx, orderId, lines.map((l) => ({ sku: l.sku, quantity: l.quantity, index: l.firstIndex }))),
  };
}

/** The owner sees their order, staff see every order; anyone else gets 404, as for a missing one. */
function ownerFilter(principal: Principal): string | null {
  return staffOrAbove(principal.role) ? null : principal.userId;
}

export async function getOrder(db: Queryable, principal: Principal, id: string): Promise<Order> {
  const order = await repo.findOrder(db, id);
  const owner = ownerFilter(principal);
  if (!order || (owner !== null && order.customer_id !== owner)) throw new AppError('not_found', 'No such order');
  return orderView(order, await repo.linesOf(db, [id]));
}

export async function listOrders(db: Queryable, principal: Principal, opts: { status: Status | null; after: string | null; limit: number }) {
  const rows = await repo.listOrders(db, { ...opts, customerId: ownerFilter(principal) });
  const page = rows.slice(0, opts.limit);
  const lines = await repo.linesOf(db, page.map((o) => o.id));
  const last = page[page.length - 1];
  return {
    data: page.map((o) => orderView(o, lines.filter((l) => l.order_id === o.id))),
    nextCursor: rows.length > opts.limit && last ? Buffer.from(last.id).toString('base64url') : null,
  };
}

export async function cancelOrder(tx: Tx, principal: Principal, id: string): Promise<Order> {
  const { order, from } = await repo.transitionOrder(tx, id, 'cancelled', ownerFilter(principal));
  const lines = await repo.linesOf(tx, [id]);
  if (from === 'pending_payment') {
    await releaseReservation(tx, id, lines);
  } else {
    // A paid order: its units come back to stock and its payment is refunded in full, once.
    await returnSoldStock(tx, id, lines);
    await requestRefund(tx, id);
  }
  await publishOrderEvent(tx, 'order.cancelled', order, lines);
  return orderView(order, lines);
}

export async function fulfilOrder(tx: Tx, id: string): Promise<Order> {
  const { order } = await repo.transitionOrder(tx, id, 'fulfilled');
  const lines = await repo.linesOf(tx, [id]);
  await publishOrderEvent(tx, 'order.fulfilled', order, lines);
  return orderView(order, lines);
}

/**
 * Cancels orders left in pending_payment longer than the timeout and releases their stock, each in
 * a transaction of its own (a conditional transition, so a payment that lands meanwhile wins or
 * loses cleanly). Answers how many it cancelled.
 */
export async function expireUnpaidOrders(db: Db, timeoutSeconds: number, batch = 500): Promise<number> {
  const stale = await db.query<{ id: string }>(
    `SELECT id FROM orders WHERE status = 'pending_payment' AND created_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2`,
    [timeoutSeconds, batch],
  );
  let cancelled = 0;
  for (const { id } of stale) {
    const done = await db.transaction(async (tx) => {
      const order = await repo.lockOrder(tx, id);
      if (order?.status !== 'pending_payment') return false;
      const { order: updated } = await repo.transitionOrder(tx, id, 'cancelled');
      const lines = await repo.linesOf(tx, [id]);
      await releaseReservation(tx, id, lines);
      await publishOrderEvent(tx, 'order.cancelled', updated, lines);
      return true;
    });
    if (done) cancelled++;
  }
  return cancelled;
}
