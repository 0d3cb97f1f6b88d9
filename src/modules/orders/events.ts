// Order events for webhooks and the live stream, published in the transaction of the change.
import type { Tx } from '../../platform/db.js';
import { publishEvent } from '../../platform/events.js';
import { requestEventEmails } from '../messaging/notifications.js';
import type { LineRow, OrderRow } from './repo.js';
import { orderView } from './view.js';

export type OrderEventType = 'order.created' | 'order.paid' | 'order.payment_failed' | 'order.cancelled' | 'order.fulfilled';

export async function publishOrderEvent(tx: Tx, type: OrderEventType, order: OrderRow, lines: LineRow[]): Promise<void> {
  const event = await publishEvent(tx, type, { order: orderView(order, lines) }, [order.customer_id]);
  // The customer's email about it (confirmation, failed payment) is a job committed with the event.
  if (type === 'order.paid' || type === 'order.payment_failed') await requestEventEmails(tx, event.id);
}
