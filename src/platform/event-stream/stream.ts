// What the pieces of the event hub share: a stream (its owner, keys, sink and where its replay
// ends), positions in the outbox as the hub compares them, and the frame an event becomes.
import type { EventsRow } from '../../db/rows.ts';

/** The sink a stream writes to: an http.ServerResponse, or anything that behaves like one. */
export interface StreamSink {
  write(chunk: string): boolean;
  readonly writableLength: number;
  end(): void;
  destroy(): void;
  once(event: 'close' | 'drain', listener: () => void): unknown;
  removeListener(event: 'close' | 'drain', listener: () => void): unknown;
}

export interface StreamOwner {
  userId: string;
  keys: string[];
}

/** A position in the outbox, the transaction id as a number so that positions compare. */
export interface Position {
  tx: bigint;
  id: string;
}

/** An event as the stream reads it (tx, an xid8, as text). */
export type EventRow = Pick<EventsRow, 'id' | 'type' | 'audience' | 'data' | 'created_at' | 'tx'>;

export interface Stream {
  id: string;
  owner: StreamOwner;
  keys: Set<string>;
  sink: StreamSink;
  /** Joined the hub: live events go to it (into `pending` until the replay is done). */
  live: boolean;
  /** Where its replay ends: live events up to here are the replay's to send, not the hub's. */
  upTo: Position | null;
  pending: string[];
  pendingBytes: number;
  closed: boolean;
  /** Gives its admission's place back. */
  leave: () => void;
}

export function isAfter(a: Position, b: Position): boolean {
  return a.tx > b.tx || (a.tx === b.tx && a.id > b.id);
}

export function positionOf(row: EventRow): Position {
  return { tx: BigInt(row.tx), id: row.id };
}

export function frameOf(row: EventRow): string {
  const body = { id: row.id, type: row.type, createdAt: row.created_at.toISOString(), data: row.data };
  // JSON.stringify never emits a raw newline, so the payload is one data line.
  return `id: ${row.id}\nevent: ${row.type}\ndata: ${JSON.stringify(body)}\n\n`;
}
