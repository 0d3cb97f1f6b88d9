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
import type { JobLog } from '../../platform/log.ts';
import type { ChargeResult, PaymentProvider } from './providers/provider.ts';
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

export interface ChargeOptions extends ChargeHooks {
  /** Where faults and payments that need an operator are logged. */
  log?: JobLog;
}

/**
 * Charges one payment (chargeMany for one); throws when it must be tried again later. */
export async function chargeOnce(db: Db, provider: PaymentProvider, paymentId: string, options: ChargeOptions = {}): Promise<void> {
  const retry = await chargeMany(db, provider, [paymentId], options);
  const err = retry.get(paymentId);
  if (err) throw err;
}

type Outcome =
  | { status: 'succeeded'; providerRef: string }
  | { status: 'declined'; reason: string; detail?: string }
  /** The processor said "succeeded" for something other than what we asked: not a success. */
  | { status: 'mismatch'; providerRef: string; detail: string };
type Verdict = { payment: repo.PaymentToCharge; result: Outcome };
/** A payment an operator must look at, and why. */
interface Review { paymentId: string; orderId: string; reason: string }

/** What a customer is told of a charge the processor did not confirm as asked (the details are for staff). */
const unconfirmed = 'charge_unconfirmed';

const asError = (err: unknown) => (err instanceof Error ? err : new Error(String(err)));
/** Text from outside (a processor's answer) kept for staff: bounded, whatever it holds. */
const clip = (text: string) => (text.length > 1000 ? `${text.slice(0, 1000)}…` : text);

/**
 * What the processor reports it charged, against what we asked: another amount, currency or order
 * (a PaymentIntent that is not ours) is not a success, whatever its status says. Answers why not.
 */
function chargeMismatch(payment: repo.PaymentToCharge, result: Extract<ChargeResult, { status: 'succeeded' }>): string | null {
  const wrong: string[] = [];
  if (result.charged.amount !== payment.amount || result.charged.currency !== payment.currency) {
    wrong.push(`charged ${String(result.charged.amount)} ${String(result.charged.currency)} instead of ${payment.amount} ${payment.currency}`);
  }
  if (result.orderId !== payment.order_id) wrong.push(`for order ${String(result.orderId)} instead of ${payment.order_id}`);
  return wrong.length === 0 ? null : clip(`the processor answered succeeded (${String(result.providerRef)}) but ${wrong.join(' and ')}`);
}

/**
 * Charges a batch of payments (the charge jobs fetched together): the processor calls run side
 * by side, each with its payment's own key, and every outcome is recorded in one transaction.
 * Answers, per payment that must be tried again later, why (the others are done: charged,
 * declined, or settled before by another run). One payment that cannot be read, charged or
 * recorded (a fault) fails alone and is logged; the rest of the batch goes on.
 */
export async function chargeMany(db: Db, provider: PaymentProvider, paymentIds: string[], options: ChargeOptions = {}): Promise<Map<string, Error>> {
  const retry = new Map<string, Error>();
  const fault = (paymentId: string, err: unknown, what: string) => {
    retry.set(paymentId, asError(err));
    options.log?.error({ err, paymentId }, what);
  };
  // A payment settled already: this run is a repeat, nothing to do.
  const payments = (await readPayments(db, paymentIds, fault)).filter((p) => p.status === 'pending');
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
    await options.beforeCharge?.();
    const results = await Promise.all(toCharge.map((payment) => provider.charge({
      idempotencyKey: chargeKey(payment.id),
      amount: { amount: payment.amount, currency: payment.currency },
      token: payment.payment_token,
      orderId: payment.order_id,
      description: `Engine Room order ${payment.order_id}`,
    }).catch(asError)));
    await options.afterCharge?.();
    results.forEach((result, i) => {
      const payment = toCharge[i]!;
      if (result instanceof Error) fault(payment.id, result, 'the payment provider failed the charge');
      else if (result.status === 'retryable') retry.set(payment.id, new RetryLater(`charge of ${payment.id}: ${result.reason}`));
      else if (result.status === 'declined') verdicts.push({ payment, result });
      else {
        const mismatch = chargeMismatch(payment, result);
        verdicts.push({ payment, result: mismatch ? { status: 'mismatch', providerRef: clip(String(result.providerRef)), detail: mismatch } : { status: 'succeeded', providerRef: result.providerRef } });
      }
    });
  }
  if (verdicts.length > 0) {
    let reviews: Review[] = [];
    try {
      reviews = await db.transaction((tx) => recordCharges(tx, verdicts));
    } catch (err) {
      // A fault: so that one bad payment cannot hold up the others, each is recorded on its own
      // (the processor calls are done and keyed, so only the recording is repeated).
      if (verdicts.length === 1) fault(verdicts[0]!.payment.id, err, 'could not record the outcome of a charge');
      else {
        for (const verdict of verdicts) {
          try {
            reviews.push(...await db.transaction((tx) => recordCharges(tx, [verdict])));
          } catch (e) {
            fault(verdict.payment.id, e, 'could not record the outcome of a charge');
          }
        }
      }
    }
    for (const r of reviews) options.log?.error({ paymentId: r.paymentId, orderId: r.orderId, reason: r.reason }, 'a payment needs an operator\'s review');
  }
  return retry;
}

/** The payments of a batch; when that read fails (one row no number can hold), each is read alone, so only that one fails. */
async function readPayments(db: Db, ids: string[], fault: (id: string, err: unknown, what: string) => void): Promise<repo.PaymentToCharge[]> {
  try {
    return await repo.paymentsToCharge(db, ids);
  } catch {
    const rows: repo.PaymentToCharge[] = [];
    for (const id of ids) {
      try {
        rows.push(...await repo.paymentsToCharge(db, [id]));
      } catch (e) {
        fault(id, e, 'could not read a payment to charge');
      }
    }
    return rows;
  }
}

function settlementOf({ payment, result }: Verdict): repo.Settlement {
  switch (result.status) {
    case 'succeeded': return { id: payment.id, to: 'succeeded', providerRef: result.providerRef };
    case 'declined': return { id: payment.id, to: 'failed', failure: result.reason, ...(result.detail ? { processorMessage: clip(result.detail) } : {}) };
    case 'mismatch': return { id: payment.id, to: 'failed', providerRef: result.providerRef, failure: unconfirmed, review: result.detail };
  }
}

/**
 * Records the outcomes of a batch of charges. The orders are locked first, in id order (the same
 * order-then-payment order as cancelling, so the two never deadlock and whichever comes second sees
 * what the first did); a payment settled before is skipped. A capture posts to the ledger and pays
 * its order, or, when the order was cancelled while the charge was in flight, is refunded (the books
 * balance whichever came first). A decline, or an answer that does not match the charge, fails its
 * order and releases its stock (the latter is also left for an operator, with nothing posted). The
 * stock rows, which a flash sale's orders all share, are settled last and once for the whole batch.
 * Answers the payments that need an operator's review.
 */
async function recordCharges(tx: Tx, verdicts: Verdict[]): Promise<Review[]> {
  const current = new Map((await orders.lockOrders(tx, [...new Set(verdicts.map((v) => v.payment.order_id))])).map((o) => [o.id, o]));
  const settled = await repo.settlePayments(tx, verdicts.map(settlementOf));
  if (settled.length === 0) return [];
  const captured = settled.filter((p) => p.status === 'succeeded');
  await postCaptures(tx, captured.filter((p) => p.amount > 0).map((p) => ({ orderId: p.order_id, paymentId: p.id, amount: p.amount, currency: p.currency })));

  const orderStatus = (p: repo.PaymentRow) => current.get(p.order_id)?.status;
  const wasPending = (p: repo.PaymentRow) => orderStatus(p) === 'pending_payment';
  const paid = await orders.transitionOrders(tx, captured.filter(wasPending).map((p) => p.order_id), 'paid');
  const failed = await orders.transitionOrders(tx, settled.filter((p) => p.status === 'failed' && wasPending(p)).map((p) => p.order_id), 'payment_failed');
  const lines = await orders.linesOf(tx, [...paid, ...failed].map((o) => o.id));
  const linesOf = (orderId: string) => lines.filter((l) => l.order_id === orderId);
  await publishOrderEvents(tx, 'order.paid', paid.map((order) => ({ order, lines: linesOf(order.id) })));
  await publishOrderEvents(tx, 'order.payment_failed', failed.map((order) => ({ order, lines: linesOf(order.id) })));
  // Cancelled while the charge was in flight (the cancel released the stock): refunded in full.
  for (const p of captured.filter((c) => orderStatus(c) === 'cancelled')) await requestRefund(tx, p.order_id);
  // A capture for an order in any other state (paid, failed or fulfilled already: no path of ours
  // leads here) is recorded as what happened, and left to an operator rather than refunded: a
  // refund could return the money of an order that was paid and shipped.
  const unexpected = captured.filter((c) => !wasPending(c) && orderStatus(c) !== 'cancelled')
    .map((p) => ({ paymentId: p.id, orderId: p.order_id, reason: `captured while its order was ${orderStatus(p) ?? 'missing'}` }));
  await repo.flagForReview(tx, unexpected.map((r) => ({ id: r.paymentId, reason: r.reason })));
  await settleReservations(tx, [
    ...paid.flatMap((o) => linesOf(o.id).map((l) => ({ orderId: o.id, sku: l.sku, quantity: l.quantity, kind: 'sale' as const }))),
    ...failed.flatMap((o) => linesOf(o.id).map((l) => ({ orderId: o.id, sku: l.sku, quantity: l.quantity, kind: 'release' as const }))),
  ]);
  const mismatched = new Map(verdicts.flatMap(({ payment, result }) => (result.status === 'mismatch' ? [[payment.id, result.detail] as const] : [])));
  return [
    ...settled.filter((p) => mismatched.has(p.id)).map((p) => ({ paymentId: p.id, orderId: p.order_id, reason: mismatched.get(p.id)! })),
    ...unexpected,
  ];
}

export async function refundOnce(db: Db, provider: PaymentProvider, refundId: string, options: { log?: JobLog } = {}): Promise<void> {
  const refund = await repo.findRefund(db, refundId);
  if (!refund || refund.status !== 'pending') return;
  await repo.countRefundAttempt(db, refundId);
  const result = await provider.refund({
    idempotencyKey: refundKey(refundId),
    providerRef: refund.payment_provider_ref ?? '',
    amount: { amount: refund.amount, currency: refund.currency },
  });
  if (result.status === 'retryable') throw new RetryLater(`refund ${refundId}: ${result.reason}`);
  const mismatch = result.status === 'succeeded' && (result.refunded.amount !== refund.amount || result.refunded.currency !== refund.currency)
    ? clip(`the processor answered refunded (${String(result.providerRef)}) but ${String(result.refunded.amount)} ${String(result.refunded.currency)} instead of ${refund.amount} ${refund.currency}`)
    : null;
  await db.transaction(async (tx) => {
    if (result.status === 'declined' || mismatch) {
      // Money we owe back and could not return (or cannot tell we did): left visible (refund
      // failed, payment succeeded) for an operator, and the audit reports the cancelled order as
      // not refunded.
      await repo.settleRefund(tx, refundId, 'failed', { failure: result.status === 'declined' ? result.reason : 'refund_unconfirmed' });
      if (mismatch) await repo.flagForReview(tx, [{ id: refund.payment_id, reason: mismatch }]);
      return;
    }
    if (!(await repo.settleRefund(tx, refundId, 'succeeded', { providerRef: result.providerRef }))) return;
    await repo.markRefunded(tx, refund.payment_id);
    await postRefund(tx, { orderId: refund.order_id, paymentId: refund.payment_id, amount: refund.amount, currency: refund.currency });
  });
  if (mismatch) options.log?.error({ refundId, paymentId: refund.payment_id, reason: mismatch }, 'a payment needs an operator\'s review');
  else if (result.status === 'declined') options.log?.warn({ refundId, paymentId: refund.payment_id, reason: result.reason, detail: result.detail }, 'the processor declined a refund');
}

/** A payment as shown: the processor's own words and an operator's flag only to staff. */
export function paymentView(p: repo.PaymentRow, staff: boolean) {
  return {
    id: p.id,
    status: p.status,
    amount: { amount: p.amount, currency: p.currency },
    attempts: p.attempts,
    provider: p.provider,
    failure: p.failure,
    ...(staff ? { processorMessage: p.processor_message, review: p.review_reason } : {}),
    createdAt: p.created_at.toISOString(),
    updatedAt: p.updated_at.toISOString(),
  };
}
