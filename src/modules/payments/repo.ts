// SQL of payments and refunds.
import type { Queryable, Tx } from '../../platform/db.js';

export interface PaymentRow {
  id: string; order_id: string; provider: string | null; amount: number; currency: string;
  status: 'pending' | 'succeeded' | 'failed' | 'refunded'; attempts: number; provider_ref: string | null;
  failure: string | null; created_at: Date; updated_at: Date;
}

export interface RefundRow {
  id: string; payment_id: string; amount: number; currency: string; status: 'pending' | 'succeeded' | 'failed';
  attempts: number; provider_ref: string | null; failure: string | null;
}

export async function insertPayment(tx: Tx, p: { id: string; orderId: string; amount: number; currency: string }): Promise<void> {
  await tx.query(
    `INSERT INTO payments (id, order_id, amount, currency, status) VALUES ($1, $2, $3, $4, 'pending')`,
    [p.id, p.orderId, p.amount, p.currency],
  );
}

export async function findPayment(db: Queryable, id: string): Promise<PaymentRow | undefined> {
  const [row] = await db.query<PaymentRow>('SELECT * FROM payments WHERE id = $1', [id]);
  return row;
}

export function paymentsOfOrder(db: Queryable, orderId: string): Promise<PaymentRow[]> {
  return db.query<PaymentRow>('SELECT * FROM payments WHERE order_id = $1 ORDER BY id DESC', [orderId]);
}

export async function paymentOfOrder(tx: Tx, orderId: string): Promise<PaymentRow | undefined> {
  const [row] = await tx.query<PaymentRow>('SELECT * FROM payments WHERE order_id = $1', [orderId]);
  return row;
}

/** Counts an attempt before calling the processor, so "might have charged" is known after a crash. */
export async function countChargeAttempt(db: Queryable, id: string, provider: string): Promise<void> {
  await db.query(`UPDATE payments SET attempts = attempts + 1, provider = $2, updated_at = now() WHERE id = $1 AND status = 'pending'`, [id, provider]);
}

/** Settles a pending payment and answers it; undefined when it was settled before (a job that ran twice). */
export async function settlePayment(tx: Tx, id: string, to: 'succeeded' | 'failed', detail: { providerRef?: string; failure?: string }): Promise<PaymentRow | undefined> {
  const [row] = await tx.query<PaymentRow>(
    `UPDATE payments SET status = $2, provider_ref = coalesce($3, provider_ref), failure = $4, updated_at = now()
      WHERE id = $1 AND status = 'pending' RETURNING *`,
    [id, to, detail.providerRef ?? null, detail.failure ?? null],
  );
  return row;
}

export async function markRefunded(tx: Tx, id: string): Promise<void> {
  await tx.query(`UPDATE payments SET status = 'refunded', updated_at = now() WHERE id = $1 AND status = 'succeeded'`, [id]);
}

/** At most one refund per payment (a unique index); answers null when one exists. */
export async function insertRefund(tx: Tx, r: { id: string; paymentId: string; amount: number; currency: string }): Promise<string | null> {
  const rows = await tx.query<{ id: string }>(
    `INSERT INTO refunds (id, payment_id, amount, currency, status) VALUES ($1, $2, $3, $4, 'pending')
     ON CONFLICT (payment_id) DO NOTHING RETURNING id`,
    [r.id, r.paymentId, r.amount, r.currency],
  );
  return rows[0]?.id ?? null;
}

export async function findRefund(db: Queryable, id: string): Promise<(RefundRow & { order_id: string; payment_provider_ref: string | null }) | undefined> {
  const [row] = await db.query<RefundRow & { order_id: string; payment_provider_ref: string | null }>(
    `SELECT r.*, p.order_id, p.provider_ref AS payment_provider_ref FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE r.id = $1`,
    [id],
  );
  return row;
}

export async function countRefundAttempt(db: Queryable, id: string): Promise<void> {
  await db.query(`UPDATE refunds SET attempts = attempts + 1, updated_at = now() WHERE id = $1 AND status = 'pending'`, [id]);
}

export async function settleRefund(tx: Tx, id: string, to: 'succeeded' | 'failed', detail: { providerRef?: string; failure?: string }): Promise<boolean> {
  const rows = await tx.query(
    `UPDATE refunds SET status = $2, provider_ref = coalesce($3, provider_ref), failure = $4, updated_at = now()
      WHERE id = $1 AND status = 'pending' RETURNING id`,
    [id, to, detail.providerRef ?? null, detail.failure ?? null],
  );
  return rows.length > 0;
}
