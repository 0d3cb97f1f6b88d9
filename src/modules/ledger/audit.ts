// The audit: queries that look for a violation of what Engine Room promises. Each answers the
// offending rows, so a failing check says exactly where the books are wrong. Run by
// GET /v1/admin/audit and `engine-room audit` (non-zero exit on a failure, for cron and CI).
import type { Queryable } from '../../platform/db.ts';
import { stockDiscrepancies } from '../catalog/inventory.ts';
import { maxOrderTotal, maxUnitPrice } from '../../limits.ts';

export interface CheckResult {
  name: string;
  ok: boolean;
  violations: unknown[];
  skipped?: string;
}
export interface AuditResult {
  ok: boolean;
  checks: CheckResult[];
}
export interface AuditOptions {
  /** The configured payment provider: a check of another provider's books is skipped, with why. */
  paymentProvider: 'sandbox' | 'stripe';
}

const maxShown = 20;

interface Check {
  name: string;
  /** Only for this payment provider (its books are read), skipped under any other. */
  provider?: AuditOptions['paymentProvider'];
  run: (db: Queryable) => Promise<unknown[]>;
}

const checks: Check[] = [
  {
    name: 'ledger transactions balance per currency',
    run: (db) =>
      db.query(
        `SELECT transaction_id, currency, sum(debit)::bigint AS debits, sum(credit)::bigint AS credits
         FROM ledger_entries GROUP BY transaction_id, currency HAVING sum(debit) <> sum(credit) LIMIT ${maxShown}`,
      ),
  },
  {
    name: 'every paid order was charged exactly its total, once',
    run: (db) =>
      db.query(
        `SELECT o.id AS order_id, o.status, o.total_amount, p.status AS payment_status, p.amount AS payment_amount,
              (SELECT count(*)::int FROM ledger_transactions t WHERE t.order_id = o.id AND t.kind = 'capture') AS captures,
              (SELECT coalesce(sum(e.debit), 0)::bigint FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
                WHERE t.order_id = o.id AND t.kind = 'capture' AND e.account = 'processor_clearing') AS captured
         FROM orders o LEFT JOIN payments p ON p.order_id = o.id
        WHERE o.status IN ('paid', 'fulfilled') AND o.total_amount > 0
          AND (p.id IS NULL OR p.status NOT IN ('succeeded', 'refunded') OR p.amount <> o.total_amount
               OR (SELECT count(*) FROM ledger_transactions t WHERE t.order_id = o.id AND t.kind = 'capture') <> 1
               OR (SELECT coalesce(sum(e.debit), 0) FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
                    WHERE t.order_id = o.id AND t.kind = 'capture' AND e.account = 'processor_clearing') <> o.total_amount)
        LIMIT ${maxShown}`,
      ),
  },
  {
    name: 'every captured payment of a cancelled order was refunded exactly once, and nothing else was',
    run: (db) =>
      db.query(
        `SELECT o.id AS order_id, o.status, p.status AS payment_status,
              (SELECT count(*)::int FROM ledger_transactions t WHERE t.payment_id = p.id AND t.kind = 'refund') AS refunds,
              (SELECT count(*)::int FROM ledger_transactions t WHERE t.payment_id = p.id AND t.kind = 'capture') AS captures
         FROM payments p JOIN orders o ON o.id = p.order_id
        WHERE ((SELECT count(*) FROM ledger_transactions t WHERE t.payment_id = p.id AND t.kind = 'refund') > 0
                 AND (o.status <> 'cancelled' OR p.status <> 'refunded'))
           OR (p.status = 'refunded' AND (SELECT count(*) FROM ledger_transactions t WHERE t.payment_id = p.id AND t.kind = 'refund') <> 1)
           OR (o.status = 'cancelled' AND p.status = 'refunded' AND
               (SELECT coalesce(sum(e.credit), 0) FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
                 WHERE t.payment_id = p.id AND t.kind = 'refund' AND e.account = 'processor_clearing') <> p.amount)
        LIMIT ${maxShown}`,
      ),
  },
  {
    name: 'no stock level is negative or reserved beyond what is on hand',
    run: (db) =>
      db.query(
        `SELECT sku, on_hand, reserved FROM stock_levels WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand LIMIT ${maxShown}`,
      ),
  },
  {
    name: 'reserved equals the sum of open reservations',
    run: (db) =>
      db.query(
        `SELECT s.sku, s.reserved, coalesce(open.quantity, 0)::int AS open_reservations
         FROM stock_levels s
         LEFT JOIN (SELECT l.sku, sum(l.quantity) AS quantity FROM order_lines l JOIN orders o ON o.id = l.order_id
                     WHERE o.status = 'pending_payment' GROUP BY l.sku) open USING (sku)
        WHERE s.reserved <> coalesce(open.quantity, 0) LIMIT ${maxShown}`,
      ),
  },
  {
    name: 'onHand equals starting stock plus adjustments minus sales',
    run: async (db) => (await stockDiscrepancies(db)).slice(0, maxShown),
  },
  {
    name: "every order's total is the sum of its lines",
    run: (db) =>
      db.query(
        `SELECT o.id AS order_id, o.total_amount::text AS total, coalesce(l.total, 0)::text AS lines_total
         FROM orders o LEFT JOIN (SELECT order_id, sum(total_amount) AS total FROM order_lines GROUP BY order_id) l ON l.order_id = o.id
        WHERE o.total_amount <> coalesce(l.total, 0)
        LIMIT ${maxShown}`,
      ),
  },
  {
    // Amounts are answered as text: one beyond 2^53 cannot be read as a number (platform/db.ts).
    name: 'every amount is within the bounds the API accepts (prices, and totals a number holds exactly)',
    run: (db) =>
      db.query(
        `SELECT 'variants' AS "table", sku AS row, price_amount::text AS amount FROM variants WHERE price_amount > $1
       UNION ALL SELECT 'orders', id, total_amount::text FROM orders WHERE total_amount > $2
       UNION ALL SELECT 'order_lines', order_id || '/' || line_no, total_amount::text FROM order_lines WHERE total_amount > $2
       UNION ALL SELECT 'payments', id, amount::text FROM payments WHERE amount > $2
       UNION ALL SELECT 'refunds', id, amount::text FROM refunds WHERE amount > $2
       UNION ALL SELECT 'ledger_entries', id::text, greatest(debit, credit)::text FROM ledger_entries WHERE debit > $2 OR credit > $2
       LIMIT ${maxShown}`,
        [maxUnitPrice, maxOrderTotal],
      ),
  },
  {
    name: "no payment awaits an operator's review",
    run: (db) =>
      db.query(
        `SELECT id AS payment_id, order_id, status, provider, provider_ref, review_reason FROM payments WHERE review_reason IS NOT NULL ORDER BY id LIMIT ${maxShown}`,
      ),
  },
  {
    name: 'what the processor charged equals what the ledger captured (sandbox provider)',
    provider: 'sandbox',
    run: (db) =>
      db.query(
        `WITH charged AS (
         SELECT order_id, currency, sum(amount)::bigint AS amount FROM sandbox_charges WHERE status = 'succeeded' GROUP BY order_id, currency),
       refunded AS (
         SELECT c.order_id, sum(r.amount)::bigint AS amount FROM sandbox_refunds r JOIN sandbox_charges c ON c.id = r.charge_id
          WHERE r.status = 'succeeded' GROUP BY c.order_id),
       captured AS (
         SELECT t.order_id, sum(e.debit) FILTER (WHERE t.kind = 'capture')::bigint AS amount,
                sum(e.credit) FILTER (WHERE t.kind = 'refund')::bigint AS refunded
           FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id AND e.account = 'processor_clearing'
          GROUP BY t.order_id)
       SELECT coalesce(ch.order_id, ca.order_id) AS order_id, coalesce(ch.amount, 0) AS processor_charged, coalesce(ca.amount, 0) AS ledger_captured,
              coalesce(rf.amount, 0) AS processor_refunded, coalesce(ca.refunded, 0) AS ledger_refunded
         FROM charged ch FULL JOIN captured ca ON ca.order_id = ch.order_id
         LEFT JOIN refunded rf ON rf.order_id = coalesce(ch.order_id, ca.order_id)
        WHERE coalesce(ch.amount, 0) <> coalesce(ca.amount, 0) OR coalesce(rf.amount, 0) <> coalesce(ca.refunded, 0)
        LIMIT ${maxShown}`,
      ),
  },
];

export const auditCheckNames = checks.map((c) => c.name);

/**
 * Runs every check. A check that cannot run (say, it meets a value no number can hold) fails with
 * the reason as its violation, and the others still run.
 */
export async function runAudit(db: Queryable, options: AuditOptions): Promise<AuditResult> {
  const results: CheckResult[] = [];
  for (const check of checks) {
    if (check.provider && check.provider !== options.paymentProvider) {
      results.push({
        name: check.name,
        ok: true,
        violations: [],
        skipped: `reads the ${check.provider} processor's books; the payment provider is ${options.paymentProvider}`,
      });
      continue;
    }
    let violations: unknown[];
    try {
      violations = await check.run(db);
    } catch (err) {
      violations = [{ error: `the check could not run: ${err instanceof Error ? err.message : String(err)}` }];
    }
    results.push({ name: check.name, ok: violations.length === 0, violations });
  }
  return { ok: results.every((r) => r.ok), checks: results };
}
