// The sandbox card processor: the default provider, standing in for an external one. It lives in
// our database only for convenience; it keeps its own books (sandbox_charges, sandbox_refunds,
// migration 0005), talks to them only through the statements below, each in a transaction of its
// own (never the caller's), and knows nothing of orders beyond the id the caller sends as metadata.
//
// Like a real processor it dedupes by the idempotency key of each request: the first request with
// a key creates the charge row, every later one with that key finds it, under the row's lock, and
// answers what was decided then. The UNIQUE index settles races between requests with one key
// (INSERT ... ON CONFLICT), never a read before a write.
//
// Test tokens (the contract's table): tok_ok succeeds; tok_declined is declined for good;
// tok_flaky fails transiently on the first two requests for a key, then succeeds; tok_lost_response
// charges on the first request and then loses the answer (the caller sees a timeout), so only the
// retry with the same key hears "succeeded"; tok_slow succeeds after slowDelayMs (2 s); tok_drill
// succeeds, but its charge job has a short retry budget (drills: see drillRetryBudget). Any other
// token is declined. During an outage an admin started (outage.ts), every charge answers retryable.
import type { Db, Queryable } from '../../../platform/db.ts';
import type { Refine, SandboxChargesRow, SandboxRefundsRow } from '../../../db/rows.ts';
import { newId } from '../../../platform/ids.ts';
import type { Money } from '../../../platform/schemas.ts';
import type { RetryBudget } from '../../../platform/queue.ts';
import {
  idempotencyKeyReused,
  type ChargeRequest,
  type ChargeResult,
  type PaymentProvider,
  type RefundRequest,
  type RefundResult,
} from './provider.ts';
import { outageCheck } from './outage.ts';
import { coalesce } from '../../../platform/coalesce.ts';

export interface SandboxOptions {
  /** How long tok_slow takes to answer, in milliseconds: 2000 as the contract says; tests pass less. */
  slowDelayMs?: number;
}

/**
 * The charge job of an order paid with tok_drill gives up after 3 attempts (1 s, then 2 s apart)
 * instead of the queue's 11 over half an hour: a drill's charges that meet an outage are
 * dead-lettered for real within seconds. Only the drill card: other orders keep the full budget.
 */
export function drillRetryBudget(token: string | undefined): RetryBudget {
  return token === 'tok_drill' ? { retryLimit: 2, retryDelaySeconds: 1 } : {};
}

/** Requests for one tok_flaky key that fail before one succeeds. */
const flakyFailures = 2;

export type SandboxChargeStatus = 'pending' | 'succeeded' | 'declined';

type ChargeRow = Refine<
  Pick<
    SandboxChargesRow,
    'id' | 'order_id' | 'amount' | 'currency' | 'token' | 'status' | 'decline_reason' | 'attempts'
  >,
  { status: SandboxChargeStatus }
>;

type RefundRow = Refine<
  Pick<SandboxRefundsRow, 'id' | 'charge_id' | 'amount' | 'currency' | 'status' | 'decline_reason'>,
  { status: 'succeeded' | 'declined' }
>;

/** The processor's own ids: the time-sortable body of ours under prefixes of its own. */
function processorId(prefix: 'sch' | 'srf'): string {
  return `${prefix}_${newId('ref').slice(4)}`;
}

/**
 * What a real processor refuses before its idempotency layer (nothing is recorded, as Stripe
 * stores nothing for a request that fails validation). A fault of the caller, but one that
 * concerns only this payment, so it is a decline rather than an exception.
 */
function invalidAmount(amount: Money): string | null {
  if (!Number.isSafeInteger(amount.amount) || amount.amount <= 0)
    return `invalid_amount: ${amount.amount} is not a positive whole number of minor units`;
  if (!/^[A-Z]{3}$/.test(amount.currency)) return `invalid_currency: ${amount.currency}`;
  return null;
}

function checkKey(key: string): void {
  // As a processor would answer 400: an empty or huge key is a bug of the caller.
  if (key.length === 0 || key.length > 255) throw new Error('an idempotency key must be 1 to 255 characters');
}

/** The token's verdict on the n-th request for one key, while the charge is still pending. */
type Verdict =
  { status: 'succeeded' } | { status: 'declined'; reason: string } | { status: 'retryable'; reason: string };

function decide(token: string, attempt: number): Verdict {
  switch (token) {
    case 'tok_ok':
    case 'tok_drill':
    case 'tok_slow':
    case 'tok_lost_response':
      return { status: 'succeeded' };
    case 'tok_declined':
      return { status: 'declined', reason: 'card_declined' };
    case 'tok_flaky':
      return attempt <= flakyFailures
        ? { status: 'retryable', reason: 'processor_unavailable: try again later' }
        : { status: 'succeeded' };
    default:
      return { status: 'declined', reason: 'unknown_token: the sandbox knows no such card token' };
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A charge request for a key the sandbox may never have seen, with the verdict of a first request. */
interface FirstRequest {
  id: string;
  request: ChargeRequest;
  first: Verdict;
}

/**
 * Records first requests in one statement; answers the ones it created (a key seen before, or
 * twice in the rows, creates one row at most). Rows go in key order, so two statements that share
 * keys (one payment charged by two workers at once) take the index's locks in the same order.
 */
async function insertFirstRequests(db: Queryable, rows: FirstRequest[]): Promise<Map<FirstRequest, true>> {
  const sorted = [...rows].sort((a, b) =>
    a.request.idempotencyKey < b.request.idempotencyKey
      ? -1
      : a.request.idempotencyKey > b.request.idempotencyKey
        ? 1
        : 0,
  );
  const created = await db.query<{ id: string }>(
    `INSERT INTO sandbox_charges (id, idempotency_key, order_id, amount, currency, token, description, status, decline_reason)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
     ON CONFLICT (idempotency_key) DO NOTHING RETURNING id`,
    [
      sorted.map((r) => r.id),
      sorted.map((r) => r.request.idempotencyKey),
      sorted.map((r) => r.request.orderId),
      sorted.map((r) => r.request.amount.amount),
      sorted.map((r) => r.request.amount.currency),
      sorted.map((r) => r.request.token),
      sorted.map((r) => r.request.description ?? null),
      sorted.map((r) => (r.first.status === 'retryable' ? 'pending' : r.first.status)),
      sorted.map((r) => (r.first.status === 'declined' ? r.first.reason : null)),
    ],
  );
  const ids = new Set(created.map((c) => c.id));
  return new Map(rows.filter((r) => ids.has(r.id)).map((r) => [r, true]));
}

export function createSandboxProvider(db: Db, options: SandboxOptions = {}): PaymentProvider {
  const slowDelayMs = options.slowDelayMs ?? 2000;
  const inOutage = outageCheck(db);
  // The charges of one batch reach the sandbox side by side (payments/service.ts), and each was
  // one INSERT: a third of every statement an order cost (measured for issue 15:
  // reports/2026-12-02-issue-15-full-bench.md). They are recorded together instead, as a
  // processor's batch API would; a lone request still goes at once (platform/coalesce.ts). A
  // statement that fails is retried row by row, so a request the sandbox cannot record fails alone
  // and the rest of its batch is charged.
  const recordFirst = coalesce<FirstRequest, true | Error>(
    async (rows) => {
      try {
        return await insertFirstRequests(db, rows);
      } catch (err) {
        if (rows.length === 1) throw err;
        const answers = new Map<FirstRequest, true | Error>();
        for (const row of rows) {
          const one = await insertFirstRequests(db, [row]).catch(
            (e: unknown) => new Map([[row, e instanceof Error ? e : new Error(String(e))]]),
          );
          const answer = one.get(row);
          if (answer) answers.set(row, answer);
        }
        return answers;
      }
    },
    { concurrency: 1, maxBatch: 500 },
  );

  async function charge(request: ChargeRequest): Promise<ChargeResult> {
    checkKey(request.idempotencyKey);
    const invalid = invalidAmount(request.amount);
    if (invalid) return { status: 'declined', reason: invalid };
    // Down: no answer about this charge, and nothing recorded (a retry with the key will tell).
    if (await inOutage())
      return { status: 'retryable', reason: 'processor_unavailable: the sandbox processor is in an outage (a drill)' };
    // The slow part happens before the books are touched: a transaction held open for seconds
    // would stall every other request (on PGlite, the whole database).
    if (request.token === 'tok_slow') await sleep(slowDelayMs);

    // The common case, a key never seen: decided, and recorded with the requests that come meanwhile
    // by one statement, no transaction.
    const first = decide(request.token, 1);
    const row: FirstRequest = { id: processorId('sch'), request, first };
    const created = await recordFirst(row);
    if (created instanceof Error) throw created;
    if (created) {
      if (first.status === 'succeeded') {
        return request.token === 'tok_lost_response'
          ? { status: 'retryable', reason: 'timeout: no answer from the processor' }
          : { status: 'succeeded', providerRef: row.id, charged: request.amount, orderId: request.orderId };
      }
      return first;
    }

    const outcome = await db.transaction<{ result: ChargeResult; answerLost: boolean }>(async (tx) => {
      // Creates the charge, or counts one more request for it; either way the row is now locked
      // until commit, so requests with one key are decided one after another.
      const [row] = await tx.query<ChargeRow>(
        `INSERT INTO sandbox_charges (id, idempotency_key, order_id, amount, currency, token, description, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending')
         ON CONFLICT (idempotency_key) DO UPDATE SET attempts = sandbox_charges.attempts + 1, updated_at = now()
         RETURNING id, order_id, amount, currency, token, status, decline_reason, attempts`,
        [
          processorId('sch'),
          request.idempotencyKey,
          request.orderId,
          request.amount.amount,
          request.amount.currency,
          request.token,
          request.description ?? null,
        ],
      );
      if (!row) throw new Error('sandbox: INSERT ... RETURNING answered no row');
      if (
        row.amount !== request.amount.amount ||
        row.currency !== request.amount.currency ||
        row.token !== request.token ||
        row.order_id !== request.orderId
      ) {
        throw idempotencyKeyReused(
          request.idempotencyKey,
          `charge ${row.id} is ${row.amount} ${row.currency} with ${row.token} for ${row.order_id}`,
        );
      }
      // Decided by an earlier request: answer the original result, and do nothing again.
      const succeeded = {
        status: 'succeeded',
        providerRef: row.id,
        charged: { amount: row.amount, currency: row.currency },
        orderId: row.order_id,
      } as const;
      if (row.status === 'succeeded') return { result: succeeded, answerLost: false };
      if (row.status === 'declined')
        return { result: { status: 'declined', reason: row.decline_reason ?? 'declined' }, answerLost: false };

      const verdict = decide(row.token, row.attempts);
      // A transient failure leaves the charge pending; its attempts count is what makes the next try differ.
      if (verdict.status === 'retryable') return { result: verdict, answerLost: false };
      await tx.query('UPDATE sandbox_charges SET status = $2, decline_reason = $3, updated_at = now() WHERE id = $1', [
        row.id,
        verdict.status,
        verdict.status === 'declined' ? verdict.reason : null,
      ]);
      return {
        result: verdict.status === 'succeeded' ? succeeded : verdict,
        answerLost: row.token === 'tok_lost_response' && row.attempts === 1,
      };
    });
    // The charge is committed, but its answer never reaches the caller, exactly as a timeout after
    // the processor did the work: only a retry with the same key will learn that it succeeded.
    if (outcome.answerLost) return { status: 'retryable', reason: 'timeout: no answer from the processor' };
    return outcome.result;
  }

  async function refund(request: RefundRequest): Promise<RefundResult> {
    checkKey(request.idempotencyKey);
    const invalid = invalidAmount(request.amount);
    if (invalid) return { status: 'declined', reason: invalid };

    return db.transaction<RefundResult>(async (tx) => {
      // The charge's row lock queues every refund of one charge (whatever its key), so the sum
      // of refunds is checked against a total that cannot move underneath.
      const [charged] = await tx.query<{
        amount: number;
        currency: string;
        status: SandboxChargeStatus;
        refunded_amount: number;
      }>('SELECT amount, currency, status, refunded_amount FROM sandbox_charges WHERE id = $1 FOR UPDATE', [
        request.providerRef,
      ]);
      let declineReason: string | null = null;
      if (!charged) declineReason = 'no_such_charge: the processor made no charge with this reference';
      else if (charged.status !== 'succeeded') declineReason = `charge_not_refundable: the charge is ${charged.status}`;
      else if (charged.currency !== request.amount.currency)
        declineReason = `currency_mismatch: the charge is in ${charged.currency}`;
      else if (charged.refunded_amount + request.amount.amount > charged.amount) {
        declineReason = `amount_too_large: ${charged.amount - charged.refunded_amount} ${charged.currency} is left to refund`;
      }

      // The key's first request records its verdict; a repeat finds that record instead (the
      // insert waits for a racing one with the same key to commit, then does nothing).
      const [inserted] = await tx.query<{ id: string }>(
        `INSERT INTO sandbox_refunds (id, idempotency_key, charge_id, amount, currency, status, decline_reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING id`,
        [
          processorId('srf'),
          request.idempotencyKey,
          request.providerRef,
          request.amount.amount,
          request.amount.currency,
          declineReason ? 'declined' : 'succeeded',
          declineReason,
        ],
      );
      if (!inserted) {
        const [earlier] = await tx.query<RefundRow>(
          'SELECT id, charge_id, amount, currency, status, decline_reason FROM sandbox_refunds WHERE idempotency_key = $1',
          [request.idempotencyKey],
        );
        if (!earlier) throw new Error('sandbox: a refund key conflicted but its row is gone');
        if (
          earlier.charge_id !== request.providerRef ||
          earlier.amount !== request.amount.amount ||
          earlier.currency !== request.amount.currency
        ) {
          throw idempotencyKeyReused(
            request.idempotencyKey,
            `refund ${earlier.id} is ${earlier.amount} ${earlier.currency} of ${earlier.charge_id}`,
          );
        }
        return earlier.status === 'succeeded'
          ? {
              status: 'succeeded',
              providerRef: earlier.id,
              refunded: { amount: earlier.amount, currency: earlier.currency },
            }
          : { status: 'declined', reason: earlier.decline_reason ?? 'declined' };
      }
      if (declineReason) return { status: 'declined', reason: declineReason };
      await tx.query(
        'UPDATE sandbox_charges SET refunded_amount = refunded_amount + $2, updated_at = now() WHERE id = $1',
        [request.providerRef, request.amount.amount],
      );
      return { status: 'succeeded', providerRef: inserted.id, refunded: request.amount };
    });
  }

  return { name: 'sandbox', charge, refund };
}

// What the processor charged and refunded, for GET /v1/sandbox/charges: its "dashboard".

export interface SandboxRefundView {
  id: string;
  idempotencyKey: string;
  amount: Money;
  status: 'succeeded' | 'declined';
  declineReason: string | null;
  createdAt: string;
}

export interface SandboxChargeView {
  id: string;
  idempotencyKey: string;
  orderId: string;
  amount: Money;
  status: SandboxChargeStatus;
  declineReason: string | null;
  attempts: number;
  refunded: Money;
  refunds: SandboxRefundView[];
  createdAt: string;
  updatedAt: string;
}

/** Charges newest first, after the cursor id; limit + 1 rows, so the caller can tell whether more exist. */
export async function sandboxChargesPage(
  db: Queryable,
  after: string | null,
  limit: number,
  status: SandboxChargeStatus | null,
): Promise<SandboxChargeView[]> {
  const charges = await db.query<{
    id: string;
    idempotency_key: string;
    order_id: string;
    amount: number;
    currency: string;
    status: SandboxChargeStatus;
    decline_reason: string | null;
    attempts: number;
    refunded_amount: number;
    created_at: Date;
    updated_at: Date;
  }>(
    `SELECT id, idempotency_key, order_id, amount, currency, status, decline_reason, attempts, refunded_amount, created_at, updated_at
       FROM sandbox_charges
      WHERE ($1::text IS NULL OR id < $1) AND ($2::text IS NULL OR status = $2)
      ORDER BY id DESC LIMIT $3`,
    [after, status, limit + 1],
  );
  const refunds =
    charges.length === 0
      ? []
      : await db.query<{
          id: string;
          idempotency_key: string;
          charge_id: string;
          amount: number;
          currency: string;
          status: 'succeeded' | 'declined';
          decline_reason: string | null;
          created_at: Date;
        }>(
          `SELECT id, idempotency_key, charge_id, amount, currency, status, decline_reason, created_at
       FROM sandbox_refunds WHERE charge_id = ANY($1::text[]) ORDER BY id`,
          [charges.map((c) => c.id)],
        );
  return charges.map((c) => ({
    id: c.id,
    idempotencyKey: c.idempotency_key,
    orderId: c.order_id,
    amount: { amount: Number(c.amount), currency: c.currency },
    status: c.status,
    declineReason: c.decline_reason,
    attempts: c.attempts,
    refunded: { amount: Number(c.refunded_amount), currency: c.currency },
    refunds: refunds
      .filter((r) => r.charge_id === c.id)
      .map((r) => ({
        id: r.id,
        idempotencyKey: r.idempotency_key,
        amount: { amount: Number(r.amount), currency: r.currency },
        status: r.status,
        declineReason: r.decline_reason,
        createdAt: r.created_at.toISOString(),
      })),
    createdAt: c.created_at.toISOString(),
    updatedAt: c.updated_at.toISOString(),
  }));
}
