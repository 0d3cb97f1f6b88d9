// The payment jobs. They run outside any transaction while they talk to the processor, then
// record the outcome in one transaction: payment, order, stock, ledger and events together. Charge
// jobs are worked in batches (chargeMany): one transaction records the outcomes of all of them.
//
// Why this cannot charge twice: the charge job's idempotency key is the payment id, the same on
// every attempt, so the processor charges at most once however often the job runs (a worker that
// died mid-charge, a lost answer, two workers holding the same job after a lease ran out). And the
// outcome is recorded by conditional updates (`WHERE status = 'pending'`) plus a unique ledger
// posting per payment, so recording it twice changes nothing.
import type { Db, Tx } from '../../platform/db.ts';
import type { PaymentProvider } from './providers/provider.ts';
import { settleReservations } from '../catalog/inventory.ts';
import * as orders from '../orders/repo.ts';
import { publishOrderEvents } from '../orders/events.ts';
import { postCaptures, postRefund } from '../ledger/ledger.ts';
import { requestRefund } from './outbox.ts';
import * as repo from './repo.ts';

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

/**
 * Charges one payment (chargeMany for one); throws when it must be tried again later. */
export async function chargeOnce(db: Db, provider: PaymentProvider, paymentId: string, hooks: ChargeHooks = {}): Promise<void> {
  const retry = await chargeMany(db, provider, [paymentId], hooks);
  const err = retry.get(paymentId);
  if (err) throw err;
}

type Verdict = { payment: repo.PaymentToCharge; result: { status: 'succeeded'; providerRef: string } | { status: 'declined'; reason: string } };

/**
 * Charges a batch of payments (the charge jobs fetched together): the processor calls run side
 * by side, each with its payment's own key, and every outcome is recorded in one transaction.
 * Answers, per payment that must be tried again later, why (the others are done: charged,
 * declined, or settled before by another run).
 */
export async function chargeMany(db: Db, provider: PaymentProvider, paymentIds: string[], hooks: ChargeHooks = {}): Promise<Map<string, Error>> {
  const retry = new Map<string, Error>();
  // A payment settled already: this run is a repeat, nothing to do.
  const payments = (await repo.paymentsToCharge(db, paymentIds)).filter((p) => p.status === 'pending');
  const verdicts: Verdict[] = [];
  const toCharge: repo.PaymentToCharge[] = [];
  for (const payment of payments) {
    // Cancelled (or expired) before any charge was tried: nothing to charge, nothing to refund.
    if (payment.order_status !== 'pending_payment' && payment.attempts === 0) verdicts.push({ payment, result: { status: 'declined', reason: `order ${payment.order_status} before the charge` } });
    else if (payment.amount === 0) verdicts.push({ payment, result: { status: 'succeeded', providerRef: 'free' } });
    else toCharge.push(payment);
  }
  if (toCharge.length > 0) {
    // Counted before the call: after a crash, attempts > 0 says the processor may have charged,
    // so the next run asks it again (same key) instead of assuming nothing happened.
    await repo.countChargeAttempts(db, toCharge.map((p) => p.id), provider.name);
    await hooks.beforeCharge?.();
    const results = await Promise.all(toCharge.map((payment) => provider.charge({
      idempotencyKey: chargeKey(payment.id),
      amount: { amount: payment.amount, currency: payment.currency },
      token: payment.payment_token,
      orderId: payment.order_id,
      description: `Engine Room order ${payment.order_id}`,
    }).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))))));
    await hooks.afterCharge?.();
    results.forEach((result, i) => {
      const payment = toCharge[i]!;
      if (result instanceof Error) retry.set(payment.id, result);
      else if (result.status === 'retryable') retry.set(payment.id, new RetryLater(`charge of ${payment.id}: ${result.reason}`));
      else verdicts.push({ payment, result });
    });
  }
  if (verdicts.length > 0) {
    try {
      await db.transaction((tx) => recordCharges(tx, verdicts));
    } catch (err) {
      // A fault: so that one bad payment cannot hold up the others, each is recorded on its own
      // (the processor calls are done and keyed, so only the recording is repeated).
      if (verdicts.length === 1) retry.set(verdicts[0]!.payment.id, err instanceof Error ? err : new Error(String(err)));
      else {
        for (const verdict of verdicts) {
          await db.transaction((tx) => recordCharges(tx, [verdict])).catch((e: unknown) => retry.set(verdict.payment.id, e instanceof Error ? e : new Error(String(e))));
        }
      }
    }
  }
  return retry;
}

/**
 * Records the outcomes of a batch of charges. The orders are locked first, in id order (the same
 * order-then-payment order as cancelling, so the two never deadlock and whichever comes second sees
 * what the first did); a payment settled before is skipped. A capture posts to the ledger and pays
 * its order, or, when the order was cancelled while the charge was in flight, is refunded (the books
 * balance whichever came first). A decline fails its order and releases its stock. The stock rows,
 * which a flash sale's orders all share, are settled last and once for the whole batch.
 */
async function recordCharges(tx: Tx, verdicts: Verdict[]): Promise<void> {
  const current = new Map((await orders.lockOrders(tx, [...new Set(verdicts.map((v) => v.payment.order_id))])).map((o) => [o.id, o]));
  const settled = await repo.settlePayments(tx, verdicts.map(({ payment, result }) => (result.status === 'succeeded'
    ? { id: payment.id, to: 'succeeded' as const, providerRef: result.providerRef }
    : { id: payment.id, to: 'failed' as const, failure: result.reason })));
  if (settled.length === 0) return;
  const captured = settled.filter((p) => p.status === 'succeeded');
  await postCaptures(tx, captured.filter((p) => p.amount > 0).map((p) => ({ orderId: p.order_id, paymentId: p.id, amount: p.amount, currency: p.currency })));

  const wasPending = (p: repo.PaymentRow) => current.get(p.order_id)?.status === 'pending_payment';
  const paid = await orders.transitionOrders(tx, captured.filter(wasPending).map((p) => p.order_id), 'paid');
  const failed = await orders.transitionOrders(tx, settled.filter((p) => p.status === 'failed' && wasPending(p)).map((p) => p.order_id), 'payment_failed');
  const lines = await orders.linesOf(tx, [...paid, ...failed].map((o) => o.id));
  const linesOf = (orderId: string) => lines.filter((l) => l.order_id === orderId);
  await publishOrderEvents(tx, 'order.paid', paid.map((order) => ({ order, lines: linesOf(order.id) })));
  await publishOrderEvents(tx, 'order.payment_failed', failed.map((order) => ({ order, lines: linesOf(order.id) })));
  for (const p of captured.filter((c) => !wasPending(c))) await requestRefund(tx, p.order_id);
  await settleReservations(tx, [
    ...paid.flatMap((o) => linesOf(o.id).map((l) => ({ orderId: o.id, sku: l.sku, quantity: l.quantity, kind: 'sale' as const }))),
    ...failed.flatMap((o) => linesOf(o.id).map((l) => ({ orderId: o.id, sku: l.sku, quantity: l.quantity, kind: 'release' as const }))),
  ]);
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
