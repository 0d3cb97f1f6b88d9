// The payment side of the payment jobs: reading the payments, counting the attempts, calling the
// processor outside any transaction and checking what it answers, and writing the payment and
// refund rows. What an outcome means for the order, its stock and the books is not decided here:
// each answer is handed over as a verdict (charged as asked, declined, charged but not as asked) to
// the order lifecycle (modules/orders/lifecycle.ts), which records it with these rows in one
// transaction. This module imports no other.
//
// Why this cannot charge twice: the charge job's idempotency key is the payment id, the same on
// every attempt, so the processor charges at most once however often the job runs (a worker that
// died mid-charge, a lost answer, two workers holding the same job after a lease ran out). And the
// payment is settled by a conditional update (`WHERE status = 'pending'`), so recording an outcome
// twice changes nothing (lifecycle.ts: the ledger posting is unique per payment too).
import type { Db, Tx } from '../../platform/db.ts';
import type { JobLog } from '../../platform/log.ts';
import type { ChargeResult, PaymentProvider, RefundResult } from './providers/provider.ts';
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
export interface ChargeHooks {
  beforeCharge?: () => Promise<void>;
  afterCharge?: () => Promise<void>;
}

export interface ChargeOptions extends ChargeHooks {
  /** Where faults and payments that need an operator are logged. */
  log?: JobLog;
}

export type ChargeOutcome =
  | { status: 'succeeded'; providerRef: string }
  | { status: 'declined'; reason: string; detail?: string }
  /** The processor said "succeeded" for something other than what we asked: not a success. */
  | { status: 'mismatch'; providerRef: string; detail: string };
/** A charge's outcome, handed to the order lifecycle to record. */
export type ChargeVerdict = { payment: repo.PaymentToCharge; result: ChargeOutcome };

/** What a customer is told of a charge the processor did not confirm as asked (the details are for staff). */
const unconfirmed = 'charge_unconfirmed';

const asError = (err: unknown) => (err instanceof Error ? err : new Error(String(err)));
/** Text from outside (a processor's answer) kept for staff: bounded, whatever it holds. */
const clip = (text: string) => (text.length > 1000 ? `${text.slice(0, 1000)}…` : text);

/**
 * What the processor reports it charged, against what we asked: another amount, currency or order
 * (a PaymentIntent that is not ours) is not a success, whatever its status says. Answers why not.
 */
function chargeMismatch(
  payment: repo.PaymentToCharge,
  result: Extract<ChargeResult, { status: 'succeeded' }>,
): string | null {
  const wrong: string[] = [];
  if (result.charged.amount !== payment.amount || result.charged.currency !== payment.currency) {
    wrong.push(
      `charged ${String(result.charged.amount)} ${String(result.charged.currency)} instead of ${payment.amount} ${payment.currency}`,
    );
  }
  if (result.orderId !== payment.order_id)
    wrong.push(`for order ${String(result.orderId)} instead of ${payment.order_id}`);
  return wrong.length === 0
    ? null
    : clip(`the processor answered succeeded (${String(result.providerRef)}) but ${wrong.join(' and ')}`);
}

/**
 * Charges a batch of payments (the charge jobs fetched together): the processor calls run side
 * by side, each with its payment's own key. Answers the verdicts to record (lifecycle.ts) and, per
 * payment that must be tried again later, why (the others are done, or were settled before by
 * another run). One payment that cannot be read or charged (a fault) fails alone and is logged;
 * the rest of the batch goes on.
 */
export async function chargePayments(
  db: Db,
  provider: PaymentProvider,
  paymentIds: string[],
  options: ChargeOptions = {},
): Promise<{ verdicts: ChargeVerdict[]; retry: Map<string, Error> }> {
  const retry = new Map<string, Error>();
  const fault = (paymentId: string, err: unknown, what: string) => {
    retry.set(paymentId, asError(err));
    options.log?.error({ err, paymentId }, what);
  };
  // A payment settled already: this run is a repeat, nothing to do.
  const payments = (await readPayments(db, paymentIds, fault)).filter((p) => p.status === 'pending');
  const verdicts: ChargeVerdict[] = [];
  const toCharge: repo.PaymentToCharge[] = [];
  for (const payment of payments) {
    // Cancelled (or expired) before any charge was tried: nothing to charge, nothing to refund.
    if (payment.order_status !== 'pending_payment' && payment.attempts === 0)
      verdicts.push({
        payment,
        result: { status: 'declined', reason: `order ${payment.order_status} before the charge` },
      });
    else if (payment.amount === 0) verdicts.push({ payment, result: { status: 'succeeded', providerRef: 'free' } });
    else toCharge.push(payment);
  }
  if (toCharge.length > 0) {
    // Counted before the call: after a crash, attempts > 0 says the processor may have charged,
    // so the next run asks it again (same key) instead of assuming nothing happened.
    await repo.countChargeAttempts(
      db,
      toCharge.map((p) => p.id),
      provider.name,
    );
    await options.beforeCharge?.();
    const results = await Promise.all(
      toCharge.map((payment) =>
        provider
          .charge({
            idempotencyKey: chargeKey(payment.id),
            amount: { amount: payment.amount, currency: payment.currency },
            token: payment.payment_token,
            orderId: payment.order_id,
            description: `Engine Room order ${payment.order_id}`,
          })
          .catch(asError),
      ),
    );
    await options.afterCharge?.();
    results.forEach((result, i) => {
      const payment = toCharge[i]!;
      if (result instanceof Error) fault(payment.id, result, 'the payment provider failed the charge');
      else if (result.status === 'retryable')
        retry.set(payment.id, new RetryLater(`charge of ${payment.id}: ${result.reason}`));
      else if (result.status === 'declined') verdicts.push({ payment, result });
      else {
        const mismatch = chargeMismatch(payment, result);
        verdicts.push({
          payment,
          result: mismatch
            ? { status: 'mismatch', providerRef: clip(String(result.providerRef)), detail: mismatch }
            : { status: 'succeeded', providerRef: result.providerRef },
        });
      }
    });
  }
  return { verdicts, retry };
}

/** The payments of a batch; when that read fails (one row no number can hold), each is read alone, so only that one fails. */
async function readPayments(
  db: Db,
  ids: string[],
  fault: (id: string, err: unknown, what: string) => void,
): Promise<repo.PaymentToCharge[]> {
  try {
    return await repo.paymentsToCharge(db, ids);
  } catch {
    const rows: repo.PaymentToCharge[] = [];
    for (const id of ids) {
      try {
        rows.push(...(await repo.paymentsToCharge(db, [id])));
      } catch (e) {
        fault(id, e, 'could not read a payment to charge');
      }
    }
    return rows;
  }
}

function settlementOf({ payment, result }: ChargeVerdict): repo.Settlement {
  switch (result.status) {
    case 'succeeded':
      return { id: payment.id, to: 'succeeded', providerRef: result.providerRef };
    case 'declined':
      return {
        id: payment.id,
        to: 'failed',
        failure: result.reason,
        ...(result.detail ? { processorMessage: clip(result.detail) } : {}),
      };
    case 'mismatch':
      return {
        id: payment.id,
        to: 'failed',
        providerRef: result.providerRef,
        failure: unconfirmed,
        review: result.detail,
      };
  }
}

/**
 * Settles the payments of the verdicts, in the caller's transaction (the lifecycle's, with their
 * orders locked first); answers the rows it settled, not those settled before (a job that ran twice).
 */
export function settleCharges(tx: Tx, verdicts: ChargeVerdict[]): Promise<repo.PaymentRow[]> {
  return repo.settlePayments(tx, verdicts.map(settlementOf));
}

/** A refund's outcome, handed to the order lifecycle to record; `mismatch` says why a success is not one. */
export interface RefundVerdict {
  refund: repo.RefundToSend;
  result: Exclude<RefundResult, { status: 'retryable' }>;
  mismatch: string | null;
}

/**
 * Sends a pending refund to the processor, with its own key; answers the verdict to record
 * (lifecycle.ts), or null when it was settled before (a repeat). Throws when it must be tried again later.
 */
export async function sendRefund(db: Db, provider: PaymentProvider, refundId: string): Promise<RefundVerdict | null> {
  const refund = await repo.findRefund(db, refundId);
  if (!refund || refund.status !== 'pending') return null;
  await repo.countRefundAttempt(db, refundId);
  const result = await provider.refund({
    idempotencyKey: refundKey(refundId),
    providerRef: refund.payment_provider_ref ?? '',
    amount: { amount: refund.amount, currency: refund.currency },
  });
  if (result.status === 'retryable') throw new RetryLater(`refund ${refundId}: ${result.reason}`);
  const mismatch =
    result.status === 'succeeded' &&
    (result.refunded.amount !== refund.amount || result.refunded.currency !== refund.currency)
      ? clip(
          `the processor answered refunded (${String(result.providerRef)}) but ${String(result.refunded.amount)} ${String(result.refunded.currency)} instead of ${refund.amount} ${refund.currency}`,
        )
      : null;
  return { refund, result, mismatch };
}

/**
 * Settles the refund of the verdict, and its payment when the money went back, in the caller's
 * transaction. Answers whether the money went back now (not before: a job that ran twice), which
 * is when the lifecycle posts the refund to the ledger.
 */
export async function settleRefund(tx: Tx, { refund, result, mismatch }: RefundVerdict): Promise<boolean> {
  if (result.status === 'declined' || mismatch) {
    // Money we owe back and could not return (or cannot tell we did): left visible (refund
    // failed, payment succeeded) for an operator, and the audit reports the cancelled order as
    // not refunded.
    await repo.settleRefund(tx, refund.id, 'failed', {
      failure: result.status === 'declined' ? result.reason : 'refund_unconfirmed',
    });
    if (mismatch) await repo.flagForReview(tx, [{ id: refund.payment_id, reason: mismatch }]);
    return false;
  }
  if (!(await repo.settleRefund(tx, refund.id, 'succeeded', { providerRef: result.providerRef }))) return false;
  await repo.markRefunded(tx, refund.payment_id);
  return true;
}

/** A payment as shown: the processor's own words and an operator's flag only to staff. */
/** A payment as the API shows it; staff also see the processor's ids and the refund (pass it, or null). */
export function paymentView(p: repo.PaymentRow, staff: boolean, refund: repo.RefundRow | null = null) {
  return {
    id: p.id,
    status: p.status,
    amount: { amount: p.amount, currency: p.currency },
    attempts: p.attempts,
    provider: p.provider,
    failure: p.failure,
    ...(staff
      ? {
          processorMessage: p.processor_message,
          review: p.review_reason,
          providerRef: p.provider_ref,
          refund: refund && {
            id: refund.id,
            status: refund.status,
            amount: { amount: refund.amount, currency: refund.currency },
            attempts: refund.attempts,
            providerRef: refund.provider_ref,
            failure: refund.failure,
            createdAt: refund.created_at.toISOString(),
            updatedAt: refund.updated_at.toISOString(),
          },
        }
      : {}),
    createdAt: p.created_at.toISOString(),
    updatedAt: p.updated_at.toISOString(),
  };
}
