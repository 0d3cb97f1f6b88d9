// Order events, published in the transaction of the change. Every reader of the outbox takes them
// from there on its own: webhooks, the live stream, the operations figures, and messaging for the
// emails that order.paid and order.payment_failed ask for (a confirmation, a failed payment).
import type { Tx } from '../../platform/db.ts';
import { publishEvent, publishEvents } from '../../platform/events.ts';
import type { LineRow, OrderRow } from './repo.ts';
import { orderView } from './view.ts';

export type OrderEventType =
  'order.created' | 'order.paid' | 'order.payment_failed' | 'order.cancelled' | 'order.fulfilled';

export async function publishOrderEvent(
  tx: Tx,
  type: OrderEventType,
  order: OrderRow,
  lines: LineRow[],
): Promise<void> {
  await publishEvent(tx, type, { order: orderView(order, lines) }, [order.customer_id]);
}

/** publishOrderEvent for several orders (a batch), in one statement. */
export async function publishOrderEvents(
  tx: Tx,
  type: OrderEventType,
  changed: { order: OrderRow; lines: LineRow[] }[],
): Promise<void> {
  if (changed.length === 0) return;
  await publishEvents(
    tx,
    changed.map((c) => ({ type, data: { order: orderView(c.order, c.lines) }, audience: [c.order.customer_id] })),
  );
}
