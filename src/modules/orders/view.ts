import type { LineRow, OrderRow } from './repo.ts';
import type { Order } from './schemas.ts';

export function orderView(order: OrderRow, lines: LineRow[]): Order {
  const money = (amount: number) => ({ amount, currency: order.currency });
  return {
    id: order.id,
    status: order.status,
    customerId: order.customer_id,
    lines: lines.map((l) => ({
      sku: l.sku,
      quantity: l.quantity,
      unitPrice: money(l.unit_amount),
      total: money(l.total_amount),
    })),
    total: money(order.total_amount),
    payment: { method: 'card' },
    createdAt: order.created_at.toISOString(),
    updatedAt: order.updated_at.toISOString(),
  };
}
