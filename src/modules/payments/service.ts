// The payment jobs. Each runs outside any transaction while it talks to the processor, then
// records the outcome in one transaction: payment, order, stock, ledger and events together.
//
// Why this cannot charge twice: the charge job's idempotency key is the payment id, the same on
// every attempt, so the processor charges at most once however often the job runs (a worker that
// died mid-charge, a lost answer, two workers holding the same job after a lease ran out). And the
// outcome is recorded by conditional updates (`WHERE status = 'pending'`) plus a unique ledger
// posting per payment, so recording it twice changes nothing.
import type { Db, Tx } from '../../platform/db.js';
import type { PaymentProvider } from './providers/provider.js';
import { convertReservationToSale, releaseReservation } from '../catalog/inventory.js';
import * as orders from '../orders/repo.js';
import { publishOrderEvent } from '../orders/events.js';
import { postCapture, postRefund } from '../ledger/ledger.js';
import { requestRefund } from './outbox.js';
import * as repo from './repo.js';

/** A failure worth another attempt later (the queue retries with backoff). */
export class RetryLater extends Error {}

export function chargeKey(paymentId: string): string {
  return `charge_${paymentId}`;
}

export function refundKey(refundId: string): string {
  return `refund_${refundId}`;
}

/** Points around the processor call; only crash tests use them (see failpoints in src/worker.ts). */
export interface ChargeHooks { beforeCharge?: () => Promise<void>; afterCharge?: () => Promise<void> }

export async function chargeOnce(db: Db, provider: PaymentProvider, paymentId: string, hooks: ChargeHooks = {}): Promise<void> {
  const payment = await repo.findPayment(db, paymentId);
  if (!payment || payment.status !== 'pending') return; // settled already: this run is a repeat
  const order = await orders.findOrder(db, payment.order_id);
  if (!order) return;
  if (order.status !== 'pending_payment' && payment.attempts === 0) {
    // Cancelled (or expired) before any charge was tried: nothing to charge, nothing to refund.
    await db.transaction((tx) => repo.settlePayment(tx, paymentId, 'failed', { failure: `order ${order.status} before the charge` }));
    return;
  }
  if (payment.amount === 0) {
    await db.transaction((tx) => recordCapture(tx, payment.order_id, paymentId, 'free'));
    return;
  }
  // Counted before the call: after a crash, attempts > 0 says the processor may have charged, so
  // the next run asks it again (same key) instead of assuming nothing happened.
  await repo.countChargeAttempt(db, paymentId, provider.name);
  await hooks.beforeCharge?.();
  const result = await provider.charge({
    idempotencyKey: chargeKey(paymentId),
    amount: { amount: payment.amount, currency: payment.currency },
    token: order.payment_token,
    orderId: order.id,
    description: `Engine Room order ${order.id}`,
  });
  await hooks.afterCharge?.();
  if (result.status === 'retryable') throw new RetryLater(`charge of ${paymentId}: ${result.reason}`);
  if (result.status === 'succeeded') await db.transaction((tx) => recordCapture(tx, payment.order_id, paymentId, result.providerRef));
  else await db.transaction((tx) => recordDecline(tx, payment.order_id, paymentId, result.reason));
}

async function recordCapture(tx: Tx, orderId: string, paymentId: string, providerRef: string): Promise<void> {
  // The order first, then its payment: the same lock order as cancelling, so the two never deadlock
  // and whichever comes second sees what the first did.
  const current = await orders.lockOrder(tx, orderId);
  const payment = await repo.settlePayment(tx, paymentId, 'succeeded', { providerRef });
  if (!payment) return;
  if (payment.amount > 0) await postCapture(tx, { orderId: payment.order_id, paymentId, amount: payment.amount, currency: payment.currency });
  const lines = await orders.linesOf(tx, [payment.order_id]);
  if (current?.status === 'pending_payment') {
    const { order } = await orders.transitionOrder(tx, payment.order_id, 'paid');
    await convertReservationToSale(tx, order.id, lines);
    await publishOrderEvent(tx, 'order.paid', order, lines);
  } else {
    // The order was cancelled while its charge was in flight: the money is captured and recorded,
    // and now goes back through a refund, so the books balance whichever came first.
    await requestRefund(tx, payment.order_id);
  }
}

async function recordDecline(tx: Tx, orderId: string, paymentId: string, reason: string): Promise<void> {
  const current = await orders.lockOrder(tx, orderId);
  if (!(await repo.settlePayment(tx, paymentId, 'failed', { failure: reason }))) return;
  if (current?.status !== 'pending_payment') return; // cancelled meanwhile: its stock is released already
  const { order } = await orders.transitionOrder(tx, orderId, 'payment_failed');
  const lines = await orders.linesOf(tx, [order.id]);
  await releaseReservation(tx, order.id, lines);
  await publishOrderEvent(tx, 'order.payment_failed', order, lines);
}

export async function refundOnce(db: Db, provider: PaymentProvider, refundId: string): Promise<void> {
  const refund = await repo.findRefund(db, refundId);
  if (!refund || refund.status !== 'pending') return;
  await repo.countRefundAttempt(db, refundId);
  const result = await provider.refund({
    idempotencyKey: refundKey(refundId),
    providerRef: refund.payment_provider_ref ?? '',
    amount: { amount: refund.amount, currency: refund.currency },
  });
  if (result.status === 'retryable') throw new RetryLater(`refund ${refundId}: ${result.reason}`);
  await db.transaction(async (tx) => {
    if (result.status === 'declined') {
      // Money we owe back and could not return: left visible (refund failed, payment succeeded)
      // for an operator, and the audit reports the cancelled order as not refunded.
      await repo.settleRefund(tx, refundId, 'failed', { failure: result.reason });
      return;
    }
    if (!(await repo.settleRefund(tx, refundId, 'succeeded', { providerRef: result.providerRef }))) return;
    await repo.markRefunded(tx, refund.payment_id);
    await postRefund(tx, { orderId: refund.order_id, paymentId: refund.payment_id, amount: refund.amount, currency: refund.currency });
  });
}

export function paymentView(p: repo.PaymentRow) {
  return {
    id: p.id,
    status: p.status,
    amount: { amount: p.amount, currency: p.currency },
    attempts: p.attempts,
    provider: p.provider,
    failure: p.failure,
    createdAt: p.created_at.toISOString(),
    updatedAt: p.updated_at.toISOString(),
  };
}
