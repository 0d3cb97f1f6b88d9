// Reading orders: who may see which. Placing them is place.ts; every later change of status, and
// what goes with it, is lifecycle.ts.
import type { Queryable } from '../../platform/db.ts';
import type { Principal } from '../../platform/auth.ts';
import { staffOrAbove } from '../../platform/auth.ts';
import { AppError } from '../../errors.ts';
import * as repo from './repo.ts';
import type { Order } from './schemas.ts';
import { orderView } from './view.ts';
import type { Status } from './state-machine.ts';

/** The owner sees their order, staff see every order; anyone else gets 404, as for a missing one. */
export function ownerFilter(principal: Principal): string | null {
  return staffOrAbove(principal.role) ? null : principal.userId;
}

export async function getOrder(db: Queryable, principal: Principal, id: string): Promise<Order> {
  const order = await repo.findOrder(db, id);
  const owner = ownerFilter(principal);
  if (!order || (owner !== null && order.customer_id !== owner)) throw new AppError('not_found', 'No such order');
  return orderView(order, await repo.linesOf(db, [id]));
}

export async function listOrders(db: Queryable, principal: Principal, opts: { status: Status | null; customerId: string | null; after: string | null; limit: number }) {
  // A customer's own id always wins over the filter: they see only their orders.
  const rows = await repo.listOrders(db, { ...opts, customerId: ownerFilter(principal) ?? opts.customerId });
  const page = rows.slice(0, opts.limit);
  const lines = await repo.linesOf(db, page.map((o) => o.id));
  const last = page[page.length - 1];
  return {
    data: page.map((o) => orderView(o, lines.filter((l) => l.order_id === o.id))),
    nextCursor: rows.length > opts.limit && last ? Buffer.from(last.id).toString('base64url') : null,
  };
}

/**
 * Who placed the order (undefined: no such order). app.ts hands it to the messaging module, which
 * checks the order a customer cites in a conversation with it, and so imports nothing of orders.
 */
export async function customerOfOrder(db: Queryable, id: string): Promise<string | undefined> {
  return (await repo.findOrder(db, id))?.customer_id;
}
