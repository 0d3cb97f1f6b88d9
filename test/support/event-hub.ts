// Helpers for tests that drive an event hub (platform/event-stream.ts) directly: a sink in memory,
// the frames it received, and a view of the database that counts and can hold the hub's queries.
import { EventEmitter } from 'node:events';
import type { Db } from '../../src/platform/db.ts';
import type { StreamSink } from '../../src/platform/event-stream.ts';
import { waitFor } from './wait.ts';

export type MemorySink = EventEmitter &
  StreamSink & { text: string; buffered: number; destroyed: boolean; ended: boolean; lateWrites: number };

/**
 * A sink in memory: it keeps what was written. `reads: false` makes it a client that never reads:
 * what it is sent stays in `buffered` (its writableLength) and write answers false until drain().
 */
export function memorySink(options: { reads: boolean } = { reads: true }): MemorySink & { drain(): void } {
  const sink = new EventEmitter() as MemorySink & { drain(): void };
  sink.text = '';
  sink.buffered = 0;
  sink.destroyed = false;
  sink.ended = false;
  sink.lateWrites = 0;
  let reads = options.reads;
  Object.defineProperty(sink, 'writableLength', { get: () => sink.buffered });
  sink.write = (chunk: string) => {
    if (sink.destroyed || sink.ended) sink.lateWrites++;
    sink.text += chunk;
    if (reads) return true;
    sink.buffered += Buffer.byteLength(chunk);
    return false;
  };
  sink.end = () => {
    sink.ended = true;
    sink.emit('close');
  };
  sink.destroy = () => {
    sink.destroyed = true;
    sink.emit('close');
  };
  /** The client reads everything, from now on too. */
  sink.drain = () => {
    reads = true;
    sink.buffered = 0;
    sink.emit('drain');
  };
  return sink;
}

/** The frames a sink received, as "<event> <id>" (no id: just the event), comments left out. */
export function framesOf(text: string): string[] {
  return text.split('\n\n').flatMap((frame) => {
    const event = /^event: (.*)$/m.exec(frame)?.[1];
    if (!event) return [];
    const id = /^id: (.*)$/m.exec(frame)?.[1];
    return [id ? `${event} ${id}` : event];
  });
}

/**
 * The database as an event hub sees it. It counts the hub's reads of the outbox (its one query per
 * wake-up, told apart by its text) and whether the last one found events still waiting above the
 * horizon, keeps the text of every statement, and can hold the outbox reads until released. A test
 * waits on these instead of waiting "long enough" for the hub to have read.
 */
export function watchOutboxReads(db: Db) {
  const reads = { started: 0, finished: 0, lastWaiting: false };
  const statements: string[] = [];
  let gate: { part: string; open: Promise<void> } | undefined;
  const failing: string[] = [];
  const watched: Db = {
    ...db,
    query: async <T>(text: string, params?: readonly unknown[]): Promise<T[]> => {
      statements.push(text);
      const isRead = text.includes('AS waiting');
      if (isRead) reads.started++;
      try {
        if (gate && text.includes(gate.part)) await gate.open;
        if (failing.some((part) => text.includes(part))) throw new Error(`failed on purpose: ${text.slice(0, 40)}`);
        const rows = await db.query<T & { waiting: boolean }>(text, params);
        if (isRead) reads.lastWaiting = rows[0]?.waiting === true;
        return rows;
      } finally {
        if (isRead) reads.finished++;
      }
    },
  };
  return {
    db: watched,
    reads,
    /** How many statements so far contained the text. */
    count: (part: string) => statements.filter((s) => s.includes(part)).length,
    /** Makes every statement that contains the text fail from now on. */
    fail: (part: string) => {
      failing.push(part);
    },
    /** The database answers again. */
    heal: () => {
      failing.length = 0;
    },
    /** Holds the statements that contain the text (the outbox reads by default) and start from now on, until the function answered is called. */
    hold(part = 'AS waiting'): () => void {
      let release!: () => void;
      gate = {
        part,
        open: new Promise<void>((resolve) => {
          release = resolve;
        }),
      };
      return () => {
        gate = undefined;
        release();
      };
    },
  };
}

/**
 * Waits until the event is below the horizon (every transaction older than it has ended), so a
 * stream that connects now replays it rather than receiving it live. The horizon is cluster-wide:
 * another test's transaction in flight holds it back for a moment.
 */
export async function settled(db: Db, eventId: string): Promise<void> {
  await waitFor(`${eventId} to settle`, async () => {
    const [row] = await db.query<{ below: boolean }>(
      'SELECT tx < pg_snapshot_xmin(pg_current_snapshot()) AS below FROM events WHERE id = $1',
      [eventId],
    );
    return row?.below ? true : undefined;
  });
}

export async function presenceOf(db: Db, userId: string): Promise<number> {
  const [row] = await db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM event_stream_connections WHERE user_id = $1',
    [userId],
  );
  return row!.n;
}
