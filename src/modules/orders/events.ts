// Order events for webhooks and the live stream, published in the transaction of the change.
import type { Tx } from '../../platform/db.js';
import { publishEvent } from '../../platform/events.js';
import type { LineRow, OrderRow } from './repo.js';
import { orderView } from './view.js';

export type OrderEventType = 'order.created' | 'order.paid' | 'order.payment_failed' | 'order.cancelled' | 'order.fulfilled';

export async function publishOrderEvent(tx: Tx, type: OrderEventType, order: OrderRow, lines: LineRow[]): Promise<void> {
  await publishEvent(tx, type, { order: orderView(order, lines) }, [order.customer_id]);
}
