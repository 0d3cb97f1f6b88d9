// SQL of payments and refunds.
import type { Queryable, Tx } from '../../platform/db.ts';
import type { OrdersRow, PaymentsRow, Refine, RefundsRow } from '../../db/rows.ts';

export type PaymentRow = Refine<PaymentsRow, { status: 'pending' | 'succeeded' | 'failed' | 'refunded' }>;
export type RefundRow = Refine<RefundsRow, { status: 'pending' | 'succeeded' | 'failed' }>;

/** Several pending payments in one statement (a batch of placed orders). */
export async function insertPayments(
  tx: Tx,
  payments: { id: string; orderId: string; amount: number; currency: string }[],
): Promise<void> {
  if (payments.length === 0) return;
  await tx.query(
    `INSERT INTO payments (id, order_id, amount, currency, status)
     SELECT id, order_id, amount, currency, 'pending' FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) AS p(id, order_id, amount, currency)`,
    [
      payments.map((p) => p.id),
      payments.map((p) => p.orderId),
      payments.map((p) => p.amount),
      payments.map((p) => p.currency),
    ],
  );
}

export function paymentsOfOrder(db: Queryable, orderId: string): Promise<PaymentRow[]> {
  return db.query<PaymentRow>('SELECT * FROM payments WHERE order_id = $1 ORDER BY id DESC', [orderId]);
}

export function refundsOfPayments(db: Queryable, paymentIds: string[]): Promise<RefundRow[]> {
  return db.query<RefundRow>('SELECT * FROM refunds WHERE payment_id = ANY($1::text[])', [paymentIds]);
}

export async function paymentOfOrder(tx: Tx, orderId: string): Promise<PaymentRow | undefined> {
  const [row] = await tx.query<PaymentRow>('SELECT * FROM payments WHERE order_id = $1', [orderId]);
  return row;
}

export interface PaymentToCharge extends PaymentRow, Pick<OrdersRow, 'payment_token'> {
  order_status: OrdersRow['status'];
}

/** Several payments with what charging them needs from their orders (unlocked: a first look). */
export function paymentsToCharge(db: Queryable, ids: string[]): Promise<PaymentToCharge[]> {
  return db.query<PaymentToCharge>(
    'SELECT p.*, o.status AS order_status, o.payment_token FROM payments p JOIN orders o ON o.id = p.order_id WHERE p.id = ANY($1::text[])',
    [ids],
  );
}

/**
 * Counts an attempt on each payment before calling the processor, so "might have charged" is
 * known after a crash.
 */
export async function countChargeAttempts(db: Queryable, ids: string[], provider: string): Promise<void> {
  if (ids.length === 0) return;
  await db.query(
    `UPDATE payments SET attempts = attempts + 1, provider = $2, updated_at = now() WHERE id = ANY($1::text[]) AND status = 'pending'`,
    [ids, provider],
  );
}

export interface Settlement {
  id: string;
  to: 'succeeded' | 'failed';
  providerRef?: string;
  failure?: string;
  processorMessage?: string;
  review?: string;
}

/** Settles pending payments; answers the rows it settled (not those settled before: a job that ran twice). */
export function settlePayments(tx: Tx, outcomes: Settlement[]): Promise<PaymentRow[]> {
  if (outcomes.length === 0) return Promise.resolve([]);
  return tx.query<PaymentRow>(
    `UPDATE payments p SET status = o.status, provider_ref = coalesce(o.provider_ref, p.provider_ref), failure = o.failure,
            processor_message = o.processor_message, review_reason = coalesce(o.review_reason, p.review_reason), updated_at = now()
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS o(id, status, provider_ref, failure, processor_message, review_reason)
      WHERE p.id = o.id AND p.status = 'pending' RETURNING p.*`,
    [
      outcomes.map((o) => o.id),
      outcomes.map((o) => o.to),
      outcomes.map((o) => o.providerRef ?? null),
      outcomes.map((o) => o.failure ?? null),
      outcomes.map((o) => o.processorMessage ?? null),
      outcomes.map((o) => o.review ?? null),
    ],
  );
}

/** Marks payments for an operator's review, with why (the audit lists them until cleared). */
export async function flagForReview(tx: Tx, flags: { id: string; reason: string }[]): Promise<void> {
  if (flags.length === 0) return;
  await tx.query(
    `UPDATE payments p SET review_reason = f.reason, updated_at = now() FROM unnest($1::text[], $2::text[]) AS f(id, reason) WHERE p.id = f.id`,
    [flags.map((f) => f.id), flags.map((f) => f.reason)],
  );
}

export async function markRefunded(tx: Tx, id: string): Promise<void> {
  await tx.query(`UPDATE payments SET status = 'refunded', updated_at = now() WHERE id = $1 AND status = 'succeeded'`, [
    id,
  ]);
}

/** At most one refund per payment (a unique index); answers null when one exists. */
export async function insertRefund(
  tx: Tx,
  r: { id: string; paymentId: string; amount: number; currency: string },
): Promise<string | null> {
  const rows = await tx.query<{ id: string }>(
    `INSERT INTO refunds (id, payment_id, amount, currency, status) VALUES ($1, $2, $3, $4, 'pending')
     ON CONFLICT (payment_id) DO NOTHING RETURNING id`,
    [r.id, r.paymentId, r.amount, r.currency],
  );
  return rows[0]?.id ?? null;
}

/** A refund with what sending it and recording it need from its payment. */
export interface RefundToSend extends RefundRow, Pick<PaymentsRow, 'order_id'> {
  payment_provider_ref: PaymentsRow['provider_ref'];
}

export async function findRefund(db: Queryable, id: string): Promise<RefundToSend | undefined> {
  const [row] = await db.query<RefundToSend>(
    `SELECT r.*, p.order_id, p.provider_ref AS payment_provider_ref FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE r.id = $1`,
    [id],
  );
  return row;
}

export async function countRefundAttempt(db: Queryable, id: string): Promise<void> {
  await db.query(
    `UPDATE refunds SET attempts = attempts + 1, updated_at = now() WHERE id = $1 AND status = 'pending'`,
    [id],
  );
}

export async function settleRefund(
  tx: Tx,
  id: string,
  to: 'succeeded' | 'failed',
  detail: { providerRef?: string; failure?: string },
): Promise<boolean> {
  const rows = await tx.query(
    `UPDATE refunds SET status = $2, provider_ref = coalesce($3, provider_ref), failure = $4, updated_at = now()
      WHERE id = $1 AND status = 'pending' RETURNING id`,
    [id, to, detail.providerRef ?? null, detail.failure ?? null],
  );
  return rows.length > 0;
}
