// Order events for webhooks and the live stream, published in the transaction of the change.
import type { Tx } from '../../platform/db.ts';
import { publishEvent, publishEvents } from '../../platform/events.ts';
import { requestEventEmails, requestEventEmailsMany } from '../messaging/notifications.ts';
import type { LineRow, OrderRow } from './repo.ts';
import { orderView } from './view.ts';

export type OrderEventType = 'order.created' | 'order.paid' | 'order.payment_failed' | 'order.cancelled' | 'order.fulfilled';

export async function publishOrderEvent(tx: Tx, type: OrderEventType, order: OrderRow, lines: LineRow[]): Promise<void> {
  const event = await publishEvent(tx, type, { order: orderView(order, lines) }, [order.customer_id]);
  // The customer's email about it (confirmation, failed payment) is a job committed with the event.
  if (type === 'order.paid' || type === 'order.payment_failed') await requestEventEmails(tx, event.id);
}

/** publishOrderEvent for several orders (a batch), in one statement for the events and one for the emails. */
export async function publishOrderEvents(tx: Tx, type: OrderEventType, changed: { order: OrderRow; lines: LineRow[] }[]): Promise<void> {
  if (changed.length === 0) return;
  const events = await publishEvents(tx, changed.map((c) => ({ type, data: { order: orderView(c.order, c.lines) }, audience: [c.order.customer_id] })));
  if (type === 'order.paid' || type === 'order.payment_failed') await requestEventEmailsMany(tx, events.map((e) => e.id));
}
