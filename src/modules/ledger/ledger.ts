// The double-entry ledger. Every movement of money posts one balanced transaction: per currency,
// debits equal credits (a deferred constraint trigger refuses anything else at commit). Posting
// happens in the same transaction as the state change it records.
//
// Accounts: a capture moves money from the customer into `processor_clearing` (what the processor
// holds for us) against `sales`; a refund moves it back out against `refunds`.
import type { Queryable, Tx } from '../../platform/db.ts';
import type { LedgerEntriesRow, LedgerTransactionsRow, Refine } from '../../db/rows.ts';
import { newId } from '../../platform/ids.ts';

export const accounts = { clearing: 'processor_clearing', sales: 'sales', refunds: 'refunds' } as const;

interface Posting {
  kind: 'capture' | 'refund';
  orderId: string;
  paymentId: string;
  amount: number;
  currency: string;
}

/** Posts once per payment and kind; answers false when it was posted before (a job that ran twice). */
async function post(tx: Tx, p: Posting, debit: string, credit: string): Promise<boolean> {
  const id = newId('txn');
  const inserted = await tx.query(
    `INSERT INTO ledger_transactions (id, kind, order_id, payment_id) VALUES ($1, $2, $3, $4)
     ON CONFLICT (payment_id, kind) DO NOTHING RETURNING id`,
    [id, p.kind, p.orderId, p.paymentId],
  );
  if (inserted.length === 0) return false;
  await tx.query(
    `INSERT INTO ledger_entries (transaction_id, account, currency, debit, credit)
     VALUES ($1, $2, $4, $5, 0), ($1, $3, $4, 0, $5)`,
    [id, debit, credit, p.currency, p.amount],
  );
  return true;
}

/**
 * Posts the captures of several payments in one statement: one balanced transaction each, and none
 * for a payment posted before (the unique (payment_id, kind) skips it with its entries).
 */
export async function postCaptures(tx: Tx, postings: Omit<Posting, 'kind'>[]): Promise<void> {
  if (postings.length === 0) return;
  await tx.query(
    `WITH p AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[]) AS p(id, order_id, payment_id, amount, currency)),
     t AS (
       INSERT INTO ledger_transactions (id, kind, order_id, payment_id)
       SELECT id, 'capture', order_id, payment_id FROM p
       ON CONFLICT (payment_id, kind) DO NOTHING RETURNING id)
     INSERT INTO ledger_entries (transaction_id, account, currency, debit, credit)
     SELECT p.id, side.account, p.currency, side.debit * p.amount, side.credit * p.amount
       FROM p JOIN t ON t.id = p.id
      CROSS JOIN (VALUES ($6::text, 1, 0), ($7::text, 0, 1)) AS side(account, debit, credit)`,
    [
      postings.map(() => newId('txn')),
      postings.map((p) => p.orderId),
      postings.map((p) => p.paymentId),
      postings.map((p) => p.amount),
      postings.map((p) => p.currency),
      accounts.clearing,
      accounts.sales,
    ],
  );
}

export function postRefund(tx: Tx, p: Omit<Posting, 'kind'>): Promise<boolean> {
  return post(tx, { ...p, kind: 'refund' }, accounts.refunds, accounts.clearing);
}

export interface Balance {
  account: string;
  currency: string;
  debits: number;
  credits: number;
  balance: number;
}

/** Per account and currency: what was debited, credited, and the difference (debits - credits). */
export async function balances(db: Queryable): Promise<Balance[]> {
  const rows = await db.query<{ account: string; currency: string; debits: number; credits: number }>(
    `SELECT account, currency, sum(debit)::bigint AS debits, sum(credit)::bigint AS credits
       FROM ledger_entries GROUP BY account, currency ORDER BY account, currency`,
  );
  return rows.map((r) => ({ ...r, balance: r.debits - r.credits }));
}

export type OrderEntryRow = Pick<LedgerEntriesRow, 'transaction_id' | 'account' | 'currency' | 'debit' | 'credit'> &
  Refine<Pick<LedgerTransactionsRow, 'kind' | 'payment_id' | 'created_at'>, { kind: 'capture' | 'refund' }>;

/** The entries of an order's ledger transactions, oldest first (ledger_transactions_order_id). */
export function entriesOfOrder(db: Queryable, orderId: string): Promise<OrderEntryRow[]> {
  return db.query<OrderEntryRow>(
    `SELECT t.id AS transaction_id, t.kind, t.payment_id, e.account, e.currency, e.debit, e.credit, t.created_at
       FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
      WHERE t.order_id = $1 ORDER BY t.created_at, t.id, e.id`,
    [orderId],
  );
}
