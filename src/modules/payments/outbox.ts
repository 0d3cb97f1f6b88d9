// What the orders module asks of payments, inside the order's own transaction: a payment row and
// the job that will charge it, or a refund row and the job that will refund it. Both commit with
// the order change or not at all (the outbox), and the unique indexes make a second request a no-op.
import type { Tx } from '../../platform/db.ts';
import { newId } from '../../platform/ids.ts';
import { enqueue, enqueueMany, type RetryBudget } from '../../platform/queue.ts';
import * as repo from './repo.ts';

export const chargeQueue = 'payments.charge';
export const refundQueue = 'payments.refund';

/**
 * The retry budget of one order's charge job, by its payment token. Chosen at start-up by the
 * payment provider (the sandbox's drill card has a short one, src/app.ts); the queue's own budget
 * otherwise, so no test or drill rule is consulted on a real processor's charges.
 */
export type ChargeRetryBudget = (paymentToken: string | undefined) => RetryBudget;

const queueBudget: ChargeRetryBudget = () => ({});

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
  retryBudget: ChargeRetryBudget = queueBudget,
): Promise<string[]> {
  const payments = orders.map((o) => ({
    id: newId('pay'),
    orderId: o.id,
    amount: o.total_amount,
    currency: o.currency,
  }));
  await repo.insertPayments(tx, payments);
  // Each charge job joins the trace of the request that placed its order (tracing on), with the
  // retry budget the provider gives its token.
  await enqueueMany(
    tx,
    chargeQueue,
    payments.map((p, i) => ({
      data: { paymentId: p.id },
      dedupeKey: p.id,
      traceparent: orders[i]!.traceparent,
      ...retryBudget(orders[i]!.payment_token),
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
