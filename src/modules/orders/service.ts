// Orders after they are placed (placing them: place.ts): reading, cancelling (which releases or
// returns the stock and requests the refund), fulfilling. The charge and the refund happen later,
// through the payments module.
import type { Db, Queryable, Tx } from '../../platform/db.ts';
import type { JobLog } from '../../platform/log.ts';
import type { Principal } from '../../platform/auth.ts';
import { staffOrAbove } from '../../platform/auth.ts';
import { AppError } from '../../errors.ts';
import { releaseReservation, returnSoldStock } from '../catalog/inventory.ts';
import * as repo from './repo.ts';
import type { Order } from './schemas.ts';
import { orderView } from './view.ts';
import { publishOrderEvent } from './events.ts';
import { requestRefund } from '../payments/outbox.ts';
import type { Status } from './state-machine.ts';

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
 * loses cleanly). An order that cannot be cancelled (a fault: say, an amount from before the money
 * bounds that cannot be read exactly) is logged and skipped, and the run goes on past it, page by
 * page in id order, so that no such order can hold up the others. Answers how many it cancelled.
 */
export async function expireUnpaidOrders(db: Db, timeoutSeconds: number, options: { batch?: number; log?: JobLog } = {}): Promise<number> {
  const batch = options.batch ?? 500;
  let cancelled = 0;
  let after = '';
  for (;;) {
    const stale = await db.query<{ id: string }>(
      `SELECT id FROM orders WHERE status = 'pending_payment' AND created_at < now() - make_interval(secs => $1) AND id > $3 ORDER BY id LIMIT $2`,
      [timeoutSeconds, batch, after],
    );
    for (const { id } of stale) {
      try {
        if (await db.transaction((tx) => expireOrder(tx, id))) cancelled++;
      } catch (err) {
        options.log?.error({ err, orderId: id }, 'could not cancel an unpaid order past its timeout; skipped');
      }
    }
    if (stale.length < batch) return cancelled;
    after = stale[stale.length - 1]!.id;
  }
}

async function expireOrder(tx: Tx, id: string): Promise<boolean> {
  const order = await repo.lockOrder(tx, id);
  if (order?.status !== 'pending_payment') return false;
  const { order: updated } = await repo.transitionOrder(tx, id, 'cancelled');
  const lines = await repo.linesOf(tx, [id]);
  await releaseReservation(tx, id, lines);
  await publishOrderEvent(tx, 'order.cancelled', updated, lines);
  return true;
}
