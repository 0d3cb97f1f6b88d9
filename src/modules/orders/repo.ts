// SQL of orders.
import type { Queryable, Tx } from '../../platform/db.ts';
import type { OrderLinesRow, OrdersRow, OrderStatusChangesRow, Refine } from '../../db/rows.ts';
import { AppError } from '../../errors.ts';
import { firstIdAt } from '../../platform/ids.ts';
import { statesLeadingTo, type Status } from './state-machine.ts';

/** An order as stored, its status as the state machine's union. */
export type OrderRow = Refine<OrdersRow, { status: Status }>;
export type LineRow = OrderLinesRow;

export interface NewOrder {
  id: string;
  customerId: string;
  currency: string;
  total: number;
  paymentToken: string;
  lines: { sku: string; quantity: number; unitAmount: number }[];
}

/** Several orders and their lines in one statement (a batch of placed orders); answers the rows. */
export async function insertOrders(tx: Tx, orders: NewOrder[]): Promise<{ order: OrderRow; lines: LineRow[] }[]> {
  if (orders.length === 0) return [];
  const lines = orders.flatMap((o) => o.lines.map((l, i) => ({ orderId: o.id, lineNo: i + 1, ...l })));
  const stamps = await tx.query<Pick<OrdersRow, 'id' | 'created_at' | 'updated_at'>>(
    `WITH o AS (
       INSERT INTO orders (id, customer_id, status, currency, total_amount, payment_method, payment_token)
       SELECT id, customer_id, 'pending_payment', currency, total_amount, 'card', payment_token
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[]) AS o(id, customer_id, currency, total_amount, payment_token)
       RETURNING id, created_at, updated_at),
     l AS (
       INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_amount, total_amount)
       SELECT order_id, line_no, sku, quantity, unit_amount, unit_amount * quantity
         FROM unnest($6::text[], $7::int[], $8::text[], $9::int[], $10::bigint[]) AS l(order_id, line_no, sku, quantity, unit_amount)),
     h AS (INSERT INTO order_status_changes (order_id, from_status, to_status, created_at) SELECT id, NULL, 'pending_payment', created_at FROM o)
     SELECT id, created_at, updated_at FROM o`,
    [
      orders.map((o) => o.id),
      orders.map((o) => o.customerId),
      orders.map((o) => o.currency),
      orders.map((o) => o.total),
      orders.map((o) => o.paymentToken),
      lines.map((l) => l.orderId),
      lines.map((l) => l.lineNo),
      lines.map((l) => l.sku),
      lines.map((l) => l.quantity),
      lines.map((l) => l.unitAmount),
    ],
  );
  const stampOf = new Map(stamps.map((s) => [s.id, s]));
  return orders.map((o) => {
    const stamp = stampOf.get(o.id)!;
    return {
      order: {
        id: o.id,
        customer_id: o.customerId,
        status: 'pending_payment',
        currency: o.currency,
        total_amount: o.total,
        payment_method: 'card',
        payment_token: o.paymentToken,
        created_at: stamp.created_at,
        updated_at: stamp.updated_at,
      },
      lines: o.lines.map((l, i) => ({
        order_id: o.id,
        line_no: i + 1,
        sku: l.sku,
        quantity: l.quantity,
        unit_amount: l.unitAmount,
        total_amount: l.unitAmount * l.quantity,
      })),
    };
  });
}

export async function findOrder(db: Queryable, id: string): Promise<OrderRow | undefined> {
  const [row] = await db.query<OrderRow>('SELECT * FROM orders WHERE id = $1', [id]);
  return row;
}

/** The order, locked until the transaction ends (lock orders before their payments, everywhere). */
export async function lockOrder(tx: Tx, id: string): Promise<OrderRow | undefined> {
  const [row] = await tx.query<OrderRow>('SELECT * FROM orders WHERE id = $1 FOR UPDATE', [id]);
  return row;
}

/** Several orders, locked in id order (so two batches never wait for each other in a circle). */
export function lockOrders(tx: Tx, ids: string[]): Promise<OrderRow[]> {
  return tx.query<OrderRow>('SELECT * FROM orders WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE', [ids]);
}

/**
 * A CTE that records each row of `moved` (a transition's UPDATE ... RETURNING) in the status
 * history, in the statement that changes the status: the history outlives the pruned events and
 * cannot miss a change, whichever path made it.
 */
const recordedChanges = `logged AS (
       INSERT INTO order_status_changes (order_id, from_status, to_status, created_at) SELECT id, from_status, status, updated_at FROM moved)`;

/**
 * transitionOrder for several orders the caller has locked: those in a state that leads to `to`
 * move; answers the moved rows (the others are left as they are).
 */
export function transitionOrders(tx: Tx, ids: string[], to: Status): Promise<OrderRow[]> {
  if (ids.length === 0) return Promise.resolve([]);
  // The status history is written by the same statement (see recordedChanges).
  return tx.query<OrderRow>(
    `WITH moved AS (
       UPDATE orders o SET status = $2, updated_at = now()
         FROM (SELECT id, status AS from_status FROM orders WHERE id = ANY($1::text[])) prev
        WHERE o.id = prev.id AND o.status = ANY($3::text[])
        RETURNING o.*, prev.from_status),
     ${recordedChanges}
     SELECT id, customer_id, status, currency, total_amount, payment_method, payment_token, created_at, updated_at FROM moved`,
    [ids, to, statesLeadingTo(to)],
  );
}

export function linesOf(db: Queryable, orderIds: string[]): Promise<LineRow[]> {
  return db.query<LineRow>('SELECT * FROM order_lines WHERE order_id = ANY($1::text[]) ORDER BY order_id, line_no', [
    orderIds,
  ]);
}

const clockSlackMs = 3_600_000;

export interface OrderFilter {
  customerId: string | null;
  status: Status | null;
  id: string | null;
  createdFrom: Date | null;
  createdTo: Date | null;
  after: string | null;
  limit: number;
}

/**
 * A page of orders, newest first (ids sort by creation time). The WHERE is built from the filters
 * given, so that each combination gets the plan of its own indexes (docs/PERFORMANCE.md).
 */
export function listOrders(db: Queryable, f: OrderFilter): Promise<OrderRow[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (clause: string, value: unknown) => {
    params.push(value);
    where.push(clause.replace('?', `$${params.length}`));
  };
  if (f.customerId !== null) add('customer_id = ?', f.customerId);
  if (f.status !== null) add('status = ?', f.status);
  if (f.id !== null) add('id = ?', f.id);
  // A date range is also a range of ids (they sort by time: platform/ids.ts), so it reads the
  // primary key from where the range starts rather than every newer order. The ids are made by the
  // application's clock and created_at by the database's: an hour of slack either way covers any
  // difference between the two, and created_at decides.
  if (f.createdFrom !== null) {
    add('created_at >= ?', f.createdFrom);
    add('id >= ?', firstIdAt('ord', f.createdFrom.getTime() - clockSlackMs));
  }
  if (f.createdTo !== null) {
    add('created_at < ?', f.createdTo);
    add('id < ?', firstIdAt('ord', f.createdTo.getTime() + clockSlackMs));
  }
  if (f.after !== null) add('id < ?', f.after);
  params.push(f.limit + 1);
  return db.query<OrderRow>(
    `SELECT * FROM orders ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT $${params.length}`,
    params,
  );
}

export type StatusChangeRow = Refine<
  Pick<OrderStatusChangesRow, 'from_status' | 'to_status' | 'created_at'>,
  { from_status: Status | null; to_status: Status }
>;

export function statusChangesOf(db: Queryable, orderId: string): Promise<StatusChangeRow[]> {
  return db.query<StatusChangeRow>(
    'SELECT from_status, to_status, created_at FROM order_status_changes WHERE order_id = $1 ORDER BY created_at, id',
    [orderId],
  );
}

/**
 * Moves an order to `to` if the state machine allows it from the state the order is in, in one
 * conditional UPDATE (so two racing transitions cannot both win). Answers the updated row and the
 * state it left; 404 for no such order (or one `visibleTo` may not see), 409 invalid_state otherwise.
 */
export async function transitionOrder(
  tx: Tx,
  id: string,
  to: Status,
  visibleTo: string | null = null,
): Promise<{ order: OrderRow; from: Status }> {
  const [row] = await tx.query<OrderRow & { from_status: Status }>(
    `WITH moved AS (
       UPDATE orders o SET status = $2, updated_at = now()
         FROM (SELECT id, status AS from_status FROM orders WHERE id = $1 FOR UPDATE) prev
        WHERE o.id = prev.id AND o.status = ANY($3::text[]) AND ($4::text IS NULL OR o.customer_id = $4)
        RETURNING o.*, prev.from_status),
     ${recordedChanges}
     SELECT * FROM moved`,
    [id, to, statesLeadingTo(to), visibleTo],
  );
  if (row) {
    const { from_status, ...order } = row;
    return { order, from: from_status };
  }
  const current = await findOrder(tx, id);
  if (!current || (visibleTo !== null && current.customer_id !== visibleTo))
    throw new AppError('not_found', 'No such order');
  throw new AppError('invalid_state', `An order that is ${current.status} cannot become ${to}`);
}
