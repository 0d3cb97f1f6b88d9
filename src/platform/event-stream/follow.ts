// Following the outbox live: the hub's position, and its reads from there up to the horizon
// (platform/outbox.ts), one query per wake-up however many streams are open. A wake-up comes from
// a notification (listen), the safety poll, or a stream that joined; committed events still above
// the horizon (an older transaction is running) are fetched again after a short back-off. The
// hub's reads and joins run one at a time, so a stream joins exactly between two reads.
import type { Db } from '../db.ts';
import { eventsAfterSql, horizonSql, readHorizon } from '../outbox.ts';
import type { Listen } from './listen.ts';
import { isAfter, positionOf, type EventRow, type Position } from './stream.ts';

export interface FollowOptions {
  batchSize: number;
  pollMs: number;
  /** Where wake-ups come from; null: the poll alone. */
  listen: Listen | null;
  log: { warn(obj: object, msg: string): void };
  /** Counts the query among the hub's queries in flight. */
  track: <T>(p: Promise<T>) => Promise<T>;
  /** Whether any stream is joined: the hub reads only then. */
  hasReaders: () => boolean;
  /** Each event read, in order, with its position. */
  onEvent: (row: EventRow, position: Position) => void;
}

export interface OutboxFollower {
  /**
   * Between two reads: takes the horizon now (the position, when the hub has none), and hands
   * `enter` where the joining stream's replay ends (live events up to there are the replay's). When
   * enter answers false (the stream is gone) and no stream is joined, the position is forgotten.
   * Answers where the replay ends, or null when the stream did not join.
   */
  join(enter: (upTo: Position) => boolean): Promise<Position | null>;
  /** The last stream left: no position until the next one joins. */
  forget(): void;
  /** Reads soon (coalesced with any read already scheduled). */
  wake(): void;
  /** Starts listening for wake-ups, once (the first stream does). */
  listen(): void;
  /** Whether the hub has a position in the outbox. */
  readonly following: boolean;
  /** Stops polling and listening and waits for the read in progress. */
  close(): Promise<void>;
}

export function followOutbox(db: Db, options: FollowOptions): OutboxFollower {
  const { batchSize, log, track } = options;
  // What the hub has dispatched. Null exactly while no stream is joined: the last stream to leave
  // clears it (forget), the first to join sets it.
  let cursor: Position | null = null;
  let closed = false;
  let scheduled = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let retryDelayMs = 25;
  let listening: Promise<(() => Promise<void>) | undefined> | undefined;

  let chain: Promise<unknown> = Promise.resolve();
  function exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = chain.then(fn, fn);
    chain = run.catch(() => {}); // the caller of this run gets its failure; the next run must start anyway
    return run;
  }

  async function fetchOnce(): Promise<'more' | 'waiting' | 'done'> {
    if (cursor === null) return 'done';
    const from = cursor;
    const rows = await track(
      db.query<EventRow & { horizon: string; waiting: boolean; id: string | null }>(
        `WITH h AS (SELECT ${horizonSql} AS horizon)
       SELECT h.horizon::text AS horizon,
              EXISTS (SELECT 1 FROM events w WHERE w.tx >= h.horizon) AS waiting,
              e.id, e.type, e.audience, e.data, e.created_at, e.tx::text AS tx
         FROM h LEFT JOIN LATERAL (
           ${eventsAfterSql('*', { tx: '$1', id: '$2', limit: '$3' }, 'h.horizon')}
         ) e ON true`,
        [from.tx.toString(), from.id, batchSize],
      ),
    );
    if (cursor === null) return 'done'; // every stream left during the read
    const events = rows.filter((r): r is typeof r & { id: string } => r.id !== null);
    for (const row of events) options.onEvent(row, positionOf(row));
    const last = events[events.length - 1];
    if (events.length === batchSize && last) {
      cursor = positionOf(last);
      return 'more';
    }
    const top: Position = { tx: BigInt(rows[0]!.horizon), id: '' };
    cursor = isAfter(top, from) ? top : from;
    return rows[0]!.waiting ? 'waiting' : 'done';
  }

  async function pump(): Promise<void> {
    scheduled = false; // a wake-up during this fetch schedules another one after it
    try {
      for (;;) {
        const outcome = await fetchOnce();
        if (outcome === 'more') continue;
        if (outcome === 'waiting') retryLater();
        else retryDelayMs = 25;
        return;
      }
    } catch (err) {
      if (!closed) log.warn({ err }, 'reading the event outbox failed; retrying');
      retryLater();
    }
  }

  function retryLater(): void {
    if (retryTimer || closed) return;
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      wake();
    }, retryDelayMs);
    retryTimer.unref();
    retryDelayMs = Math.min(1000, retryDelayMs * 2);
  }

  function wake(): void {
    if (closed || scheduled || !options.hasReaders()) return;
    scheduled = true;
    setImmediate(() => {
      void exclusive(pump);
    });
  }

  const poll = setInterval(wake, options.pollMs);
  poll.unref();

  return {
    join(enter) {
      return exclusive(async () => {
        // The replay goes up to the horizon now, even when the hub's own position lags behind it
        // (it has not read the latest commits yet): what the hub reads later up to there is
        // skipped for this stream, so the replay is as complete as it can be, without duplicates.
        const now: Position = { tx: await readHorizon(db), id: '' };
        if (cursor === null) cursor = now;
        const upTo = isAfter(now, cursor) ? now : cursor;
        if (enter(upTo)) return upTo;
        // Gone while waiting: joined nothing, and leaves no position behind for a later stream.
        if (!options.hasReaders()) cursor = null;
        return null;
      });
    },
    forget() {
      cursor = null;
    },
    wake,
    listen() {
      if (listening || !options.listen) return;
      listening = options
        .listen(wake, (err) => log.warn({ err }, 'event stream listener connection failed; reconnecting'))
        .catch((err: Error) => {
          log.warn({ err }, 'could not listen for events; streams fall back to polling');
          listening = undefined;
          return undefined;
        });
    },
    get following() {
      return cursor !== null;
    },
    async close() {
      closed = true;
      clearInterval(poll);
      clearTimeout(retryTimer);
      const stop = await listening;
      await stop?.().catch(() => {}); // closing: the listener's end can fail only on a lost connection
      await chain;
    },
  };
}
