// Reading orders: who may see which. Placing them is place.ts; every later change of status, and
// what goes with it, is lifecycle.ts.
import type { Queryable } from '../../platform/db.ts';
import type { Principal } from '../../platform/auth.ts';
import { staffOrAbove } from '../../platform/auth.ts';
import { AppError } from '../../errors.ts';
import { pageOf } from '../../platform/pagination.ts';
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

export interface OrderQuery {
  status: Status | null;
  customerId: string | null;
  customerEmail: string | null;
  createdFrom: Date | null;
  createdTo: Date | null;
  id: string | null;
  after: string | null;
  limit: number;
}

/** Finds the account with this email (case ignored); app.ts hands it over from accounts. */
export type CustomerIdOfEmail = (email: string) => Promise<string | undefined>;

export async function listOrders(
  db: Queryable,
  principal: Principal,
  q: OrderQuery,
  customerIdOfEmail: CustomerIdOfEmail,
) {
  // A customer's own id always wins over the filters: they see only their orders.
  let customerId = ownerFilter(principal) ?? q.customerId;
  if (q.customerEmail !== null) {
    // Another customer's email (or one that contradicts customerId) gets an empty page, as for an email no one has.
    const wanted = await customerIdOfEmail(q.customerEmail);
    if (wanted === undefined || (customerId !== null && wanted !== customerId)) return { data: [], nextCursor: null };
    customerId = wanted;
  }
  const rows = await repo.listOrders(db, {
    customerId,
    status: q.status,
    id: q.id,
    createdFrom: q.createdFrom,
    createdTo: q.createdTo,
    after: q.after,
    limit: q.limit,
  });
  const page = pageOf(rows, q.limit, (o) => o.id);
  const lines = await repo.linesOf(
    db,
    page.data.map((o) => o.id),
  );
  return {
    data: page.data.map((o) =>
      orderView(
        o,
        lines.filter((l) => l.order_id === o.id),
      ),
    ),
    nextCursor: page.nextCursor,
  };
}

/** The order's status history (getOrder first: it answers 404 for an order the principal may not see). */
export async function orderHistory(db: Queryable, principal: Principal, id: string) {
  await getOrder(db, principal, id);
  return (await repo.statusChangesOf(db, id)).map((c) => ({
    from: c.from_status,
    to: c.to_status,
    at: c.created_at.toISOString(),
  }));
}

/**
 * Who placed the order (undefined: no such order). app.ts hands it to the messaging module, which
 * checks the order a customer cites in a conversation with it, and so imports nothing of orders.
 */
export async function customerOfOrder(db: Queryable, id: string): Promise<string | undefined> {
  return (await repo.findOrder(db, id))?.customer_id;
}
