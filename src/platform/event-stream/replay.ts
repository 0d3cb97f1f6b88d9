// Replay: a client that reconnects with Last-Event-ID is sent, from the table, every event of its
// audience after that event's position, as long as that event is within the retention window, up
// to where the hub's live delivery takes over for it (no gap, no duplicate). Then its `ready`
// frame names the newest of its own events up to there.
import type { Queryable } from '../db.ts';
import { frameOf, positionOf, type EventRow, type Position, type Stream, type StreamSink } from './stream.ts';

const eventIdPattern = /^evt_[0-9a-z]{26}$/;

export interface ReplayOptions {
  retentionHours: number;
  batchSize: number;
  /** Counts the query among the hub's queries in flight. */
  track: <T>(p: Promise<T>) => Promise<T>;
}

/** The position to replay from, or null when the id cannot be honoured (unknown, or older than the window). */
export async function resumePoint(
  db: Queryable,
  lastEventId: string,
  retentionHours: number,
): Promise<Position | null> {
  if (!eventIdPattern.test(lastEventId)) return null;
  const [row] = await db.query<{ tx: string }>(
    'SELECT tx::text AS tx FROM events WHERE id = $1 AND created_at > now() - make_interval(hours => $2)',
    [lastEventId, retentionHours],
  );
  return row ? { tx: BigInt(row.tx), id: lastEventId } : null;
}

function waitForDrain(sink: StreamSink): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      sink.removeListener('drain', done);
      sink.removeListener('close', done);
      resolve();
    };
    sink.once('drain', done);
    sink.once('close', done);
  });
}

/** Writes the stream's events after `from` up to `upTo` to its sink, in order; answers how many. */
export async function replay(
  db: Queryable,
  s: Stream,
  from: Position,
  upTo: Position,
  options: ReplayOptions,
): Promise<number> {
  let position = from;
  let count = 0;
  for (;;) {
    const rows = await options.track(
      db.query<EventRow>(
        `SELECT id, type, audience, data, created_at, tx::text AS tx FROM events
        WHERE audience && $1::text[] AND (tx, id) > ($2::xid8, $3::text) AND (tx, id) <= ($4::xid8, $5::text)
          AND created_at > now() - make_interval(hours => $6)
        ORDER BY tx, id LIMIT $7`,
        [
          [...s.keys],
          position.tx.toString(),
          position.id,
          upTo.tx.toString(),
          upTo.id,
          options.retentionHours,
          options.batchSize,
        ],
      ),
    );
    for (const row of rows) {
      if (s.closed) return count;
      count++;
      // A replay may be long: it waits for the client to read instead of buffering it all.
      if (!s.sink.write(frameOf(row))) await waitForDrain(s.sink);
    }
    const last = rows[rows.length - 1];
    if (rows.length < options.batchSize || !last) return count;
    position = positionOf(last);
  }
}

/**
 * The stream's resumption point for its `ready` frame: the newest event of its own audience at or
 * before the position, within the retention window (an older one could not be resumed from).
 * Never another user's event: its id would tell when they last bought or wrote.
 */
export async function newestUpTo(
  db: Queryable,
  keys: Iterable<string>,
  upTo: Position,
  retentionHours: number,
): Promise<string | undefined> {
  const [row] = await db.query<{ id: string }>(
    `SELECT id FROM events
      WHERE audience && $1::text[] AND (tx, id) <= ($2::xid8, $3::text) AND created_at > now() - make_interval(hours => $4)
      ORDER BY tx DESC, id DESC LIMIT 1`,
    [[...keys], upTo.tx.toString(), upTo.id, retentionHours],
  );
  return row?.id;
}
