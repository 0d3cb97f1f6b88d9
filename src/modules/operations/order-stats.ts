// The order figures of the operations page (placed, paid, payment failed, cancelled, and the amounts)
// come from the events outbox, which the business transaction already writes: order.created,
// order.paid, order.payment_failed and order.cancelled, each with the order and its total. A
// reader in the worker processes adds them up into ops_order_stats (per 10-second bucket, type and
// currency) and ops_totals, reading from a durable position exactly as the webhook dispatcher does
// (modules/webhooks/delivery.ts): in (tx, id) order, only below the horizon pg_snapshot_xmin, and
// moving the position in the same transaction as the sums, so that each event is counted once,
// none is skipped, and placing an order costs nothing more.
import type { Db } from '../../platform/db.ts';

export const orderEventTypes = ['order.created', 'order.paid', 'order.payment_failed', 'order.cancelled'] as const;

/** Events one transaction reads at most. */
const batchSize = 2_000;

/** Adds up the next batch of events; answers how many events it read (0: nothing to do, or another process is at it). */
export async function aggregateOrderEvents(db: Db, limit = batchSize): Promise<number> {
  // Idle most of the time: a read without a lock or a transaction id says whether to go on.
  const [pending] = await db.query<{ pending: boolean }>(
    `SELECT EXISTS (
       SELECT 1 FROM ops_outbox_cursor c, LATERAL (
         SELECT 1 FROM events e
          WHERE (e.tx, e.id) > (c.tx, c.id) AND e.tx < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY e.tx, e.id LIMIT 1
       ) next
     ) AS pending`,
  );
  if (!pending?.pending) return 0;
  return db.transaction(async (tx) => {
    const [from] = await tx.query<{ tx: string; id: string }>('SELECT tx::text AS tx, id FROM ops_outbox_cursor FOR UPDATE SKIP LOCKED');
    if (!from) return 0;
    const [batch] = await tx.query<{ events: number; last_tx: string | null; last_id: string | null }>(
      `WITH batch AS (
         SELECT tx, id, type, created_at, data FROM events
          WHERE (tx, id) > ($1::xid8, $2::text) AND tx < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY tx, id LIMIT $3
       ), sums AS (
         SELECT date_bin('10 seconds', created_at, timestamptz 'epoch') AS bucket, type,
                data->'order'->'total'->>'currency' AS currency, count(*) AS count,
                sum((data->'order'->'total'->>'amount')::bigint) AS amount
           FROM batch WHERE type = ANY($4::text[]) AND data->'order'->'total'->>'currency' IS NOT NULL
          GROUP BY 1, 2, 3
       ), stats AS (
         INSERT INTO ops_order_stats (bucket, type, currency, count, amount)
         SELECT bucket, type, currency, count, amount FROM sums ORDER BY 1, 2, 3
         ON CONFLICT (bucket, type, currency) DO UPDATE
           SET count = ops_order_stats.count + excluded.count, amount = ops_order_stats.amount + excluded.amount
       ), totals AS (
         INSERT INTO ops_totals (metric, label, count, sum)
         SELECT 'orders', type || E'\\t' || currency, sum(count), sum(amount) FROM sums GROUP BY type, currency ORDER BY 2
         ON CONFLICT (metric, label) DO UPDATE SET count = ops_totals.count + excluded.count, sum = ops_totals.sum + excluded.sum
       ), last AS (
         SELECT tx, id FROM batch ORDER BY tx DESC, id DESC LIMIT 1
       )
       SELECT (SELECT count(*)::int FROM batch) AS events, (SELECT tx::text FROM last) AS last_tx, (SELECT id FROM last) AS last_id`,
      [from.tx, from.id, limit, orderEventTypes],
    );
    if (!batch || batch.events === 0) return 0;
    await tx.query('UPDATE ops_outbox_cursor SET tx = $1::xid8, id = $2, updated_at = now()', [batch.last_tx, batch.last_id]);
    return batch.events;
  });
}

/**
 * Runs the reader in this process every intervalMs (sooner while it finds full batches) until the
 * answered stop() is called.
 */
export function startOrderStats(db: Db, options: { intervalMs: number; onError?: (err: Error) => void }): { stop(): Promise<void> } {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const step = () => {
    running = (async () => {
      let read = batchSize;
      while (!stopped && read === batchSize) read = await aggregateOrderEvents(db);
    })().catch((err: Error) => options.onError?.(err)).finally(() => {
      if (!stopped) {
        timer = setTimeout(step, options.intervalMs);
        timer.unref();
      }
    });
  };
  step();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
