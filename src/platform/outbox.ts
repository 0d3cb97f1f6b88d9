// Reading the events outbox (platform/events.ts writes it): the one rule every reader follows, owned
// here so that the webhook dispatcher, the order figures and the live stream cannot drift apart.
//
// Event ids are made before their transaction commits, so "every event after the last id I read"
// could skip an event that committed late. Readers go instead in (tx, id) order, and only up to the
// horizon: the oldest transaction still running (pg_snapshot_xmin, migration 0009). Every event of
// an older transaction is committed or gone for good, so none can appear behind a reader's position
// later. The price: a transaction left open holds every reader back until it ends.
//
// A reader with a durable position (one row in a table of its own: tx xid8, id text, updated_at)
// moves it in the transaction that consumes the batch, so each event is consumed once and none is
// skipped; readers in several processes take turns on the row's lock (FOR UPDATE SKIP LOCKED). The
// live stream keeps its position in memory and uses only the query (eventsAfter). Readers run in the
// worker processes by followOutbox: on the queue's poll, and at once after a local publish.
import type { Db, Queryable, Tx } from './db.ts';
import { onLocalPublish } from './events.ts';
import { poll, type Queue } from './queue.ts';

/** A position in the outbox: (transaction id, event id), the transaction id as text (an xid8). */
export interface OutboxPosition {
  tx: string;
  id: string;
}

/** The horizon, in SQL: the oldest transaction still running. */
export const horizonSql = 'pg_snapshot_xmin(pg_current_snapshot())';

/**
 * The SQL of the next events after a position: `columns` of at most `limit` rows of `events`, in
 * (tx, id) order, after (`tx`, `id`) and below `below` (the horizon now, unless the caller read it
 * once for the whole statement). `tx`, `id` and `limit` are the caller's parameter placeholders.
 */
export function eventsAfterSql(
  columns: string,
  at: { tx: string; id: string; limit: string },
  below = horizonSql,
): string {
  return `SELECT ${columns} FROM events
          WHERE (tx, id) > (${at.tx}::xid8, ${at.id}::text) AND tx < ${below}
          ORDER BY tx, id LIMIT ${at.limit}`;
}

/** The horizon now (the live stream starts following from it). */
export async function readHorizon(db: Queryable): Promise<bigint> {
  const [row] = await db.query<{ horizon: string }>(`SELECT ${horizonSql}::text AS horizon`);
  return BigInt(row!.horizon);
}

/** What a reader made of one batch: how many events it read (every type), and the last one. */
export interface OutboxBatch<T> {
  events: number;
  last: OutboxPosition | null;
  result: T;
}

const tableName = /^[a-z_][a-z0-9_]*$/;

/**
 * One step of a reader with a durable position (cursorTable: its one row): when an event waits
 * after the position and below the horizon, locks the position, hands it to `read` (which reads
 * from it with eventsAfterSql and consumes the batch in the transaction given), and moves the
 * position to the batch's last event, all in one transaction. Answers read's result, or undefined
 * when nothing was read: no event waits (checked first without a lock or a transaction id, so an
 * idle reader writes nothing), another process holds the position (it is doing the work), or the
 * batch was empty.
 */
export async function readFromPosition<T>(
  db: Db,
  cursorTable: string,
  read: (tx: Tx, from: OutboxPosition) => Promise<OutboxBatch<T>>,
): Promise<T | undefined> {
  if (!tableName.test(cursorTable)) throw new Error(`not a cursor table: ${cursorTable}`);
  const [pending] = await db.query<{ pending: boolean }>(
    `SELECT EXISTS (
       SELECT 1 FROM ${cursorTable} c, LATERAL (
         SELECT 1 FROM events e
          WHERE (e.tx, e.id) > (c.tx, c.id) AND e.tx < ${horizonSql}
          ORDER BY e.tx, e.id LIMIT 1
       ) next
     ) AS pending`,
  );
  if (!pending?.pending) return undefined;
  return db.transaction(async (tx) => {
    const [from] = await tx.query<OutboxPosition>(
      `SELECT tx::text AS tx, id FROM ${cursorTable} FOR UPDATE SKIP LOCKED`,
    );
    if (!from) return undefined;
    const batch = await read(tx, from);
    if (batch.events === 0 || !batch.last) return undefined;
    await tx.query(`UPDATE ${cursorTable} SET tx = $1::xid8, id = $2, updated_at = now()`, [
      batch.last.tx,
      batch.last.id,
    ]);
    return batch.result;
  });
}

/** A local publish wakes a reader at most this often: under load it reads one batch per pause rather than once per event. */
const wakeGapMs = 50;

/**
 * Runs a reader's step in a loop of the queue (`name` is the loop's, for queue.wake; not a pg-boss
 * queue): again at once while the step answers true (it read a full batch), otherwise after the
 * queue's polling interval, or sooner when this process has published an event (at most every
 * 50 ms). Errors (the database down) go to the queue's onError; the loop stops with the queue.
 */
export function followOutbox(queue: Queue, name: string, step: () => Promise<boolean>): void {
  let lastWake = 0;
  let pending: NodeJS.Timeout | undefined;
  const wake = () => {
    pending = undefined;
    lastWake = Date.now();
    queue.wake(name);
  };
  const stopListening = onLocalPublish(() => {
    if (pending) return;
    const wait = lastWake + wakeGapMs - Date.now();
    if (wait <= 0) return wake();
    pending = setTimeout(wake, wait);
    pending.unref();
  });
  // poll reports a failed step to the queue's onError and goes on; it ends when the queue stops.
  void poll(queue, name, step).finally(() => {
    stopListening();
    clearTimeout(pending);
  });
}
