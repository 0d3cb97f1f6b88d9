// What the orders module asks of payments, inside the order's own transaction: a payment row and
// the job that will charge it, or a refund row and the job that will refund it. Both commit with
// the order change or not at all (the outbox), and the unique indexes make a second request a no-op.
import type { Tx } from '../../platform/db.ts';
import { newId } from '../../platform/ids.ts';
import { enqueue, enqueueMany } from '../../platform/queue.ts';
import * as repo from './repo.ts';
import { drillRetryBudget } from './providers/sandbox.ts';

export const chargeQueue = 'payments.charge';
export const refundQueue = 'payments.refund';

/** A pending payment and the job that will charge it, per order: one statement each for the batch. */
export async function requestCharges(
  tx: Tx,
  orders: {
    id: string;
    total_amount: number;
    currency: string;
    payment_token?: string;
    traceparent?: string | undefined;
  }[],
): Promise<string[]> {
  const payments = orders.map((o) => ({
    id: newId('pay'),
    orderId: o.id,
    amount: o.total_amount,
    currency: o.currency,
  }));
  await repo.insertPayments(tx, payments);
  // Each charge job joins the trace of the request that placed its order (tracing on); the drill
  // card's has a short retry budget.
  await enqueueMany(
    tx,
    chargeQueue,
    payments.map((p, i) => ({
      data: { paymentId: p.id },
      dedupeKey: p.id,
      traceparent: orders[i]!.traceparent,
      ...drillRetryBudget(orders[i]!.payment_token),
    })),
  );
  return payments.map((p) => p.id);
}

/** Requests a full refund of the order's captured payment (none when it was never captured). */
export async function requestRefund(tx: Tx, orderId: string): Promise<void> {
  const payment = await repo.paymentOfOrder(tx, orderId);
  if (!payment || payment.status !== 'succeeded') return;
  const refundId = await repo.insertRefund(tx, {
    id: newId('ref'),
    paymentId: payment.id,
    amount: payment.amount,
    currency: payment.currency,
  });
  if (refundId) await enqueue(tx, refundQueue, { refundId }, { dedupeKey: refundId });
}
