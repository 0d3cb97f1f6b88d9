// The order figures of the operations page (placed, paid, payment failed, cancelled, and the amounts)
// come from the events outbox, which the business transaction already writes: order.created,
// order.paid, order.payment_failed and order.cancelled, each with the order and its total. A
// reader in the worker processes adds them up into ops_order_stats (per 10-second bucket, type and
// currency) and ops_totals, reading from a durable position as every outbox reader does
// (platform/outbox.ts): in (tx, id) order, only below the horizon, and moving the position in the
// same transaction as the sums, so that each event is counted once, none is skipped, and placing an
// order costs nothing more.
import type { Db } from '../../platform/db.ts';
import { eventsAfterSql, readFromPosition } from '../../platform/outbox.ts';

export const orderEventTypes = ['order.created', 'order.paid', 'order.payment_failed', 'order.cancelled'] as const;

/** Events one transaction reads at most. */
const batchSize = 2_000;

/** Adds up the next batch of events; answers how many events it read (0: nothing to do, or another process is at it). */
export async function aggregateOrderEvents(db: Db, limit = batchSize): Promise<number> {
  const read = await readFromPosition(db, 'ops_outbox_cursor', async (tx, from) => {
    const [batch] = await tx.query<{ events: number; last_tx: string | null; last_id: string | null }>(
      `WITH batch AS (
         ${eventsAfterSql('tx, id, type, created_at, data', { tx: '$1', id: '$2', limit: '$3' })}
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
    const events = batch?.events ?? 0;
    const last = batch?.last_tx && batch.last_id ? { tx: batch.last_tx, id: batch.last_id } : null;
    return { events, last, result: events };
  });
  return read ?? 0;
}

/**
 * Runs the reader in this process every intervalMs (sooner while it finds full batches) until the
 * answered stop() is called.
 */
export function startOrderStats(
  db: Db,
  options: { intervalMs: number; onError?: (err: Error) => void },
): { stop(): Promise<void> } {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const step = () => {
    running = (async () => {
      let read = batchSize;
      while (!stopped && read === batchSize) read = await aggregateOrderEvents(db);
    })()
      .catch((err: Error) => options.onError?.(err))
      .finally(() => {
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
