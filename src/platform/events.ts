// Publishing an event: one row in the events outbox, in the caller's transaction, and nothing
// else in it. Readers of the outbox (the webhook dispatcher, the order figures, the live stream)
// read the rows on their own, in (tx, id) order up to the horizon, as platform/outbox.ts reads them;
// they are wired at start-up, and this file knows no event types.
import type { Queryable, Tx } from './db.ts';
import { newId } from './ids.ts';
import { currentTraceparent } from './tracing.ts';

export interface PublishedEvent {
  id: string;
  type: string;
  createdAt: string;
  data: unknown;
}

export async function publishEvent(
  tx: Tx,
  type: string,
  data: object,
  audience: string[] = [],
): Promise<PublishedEvent> {
  const [event] = await publishEvents(tx, [{ type, data, audience }]);
  return event!;
}

/** publishEvent for several events at once (a batch of placed orders): one statement. */
export async function publishEvents(
  tx: Tx,
  events: { type: string; data: object; audience: string[] }[],
): Promise<PublishedEvent[]> {
  if (events.length === 0) return [];
  const ids = events.map(() => newId('evt'));
  // With tracing on, the events keep the trace that published them (webhook deliveries join it).
  // Off, the array is empty and unnest pads the column with NULLs.
  const traceparent = currentTraceparent();
  // Arrays of arrays do not travel as parameters: each audience goes as a JSON text.
  const rows = await tx.query<{ id: string; created_at: Date }>(
    `INSERT INTO events (id, type, audience, data, traceparent)
     SELECT id, type, ARRAY(SELECT jsonb_array_elements_text(audience)), data, traceparent
       FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::jsonb[], $5::text[]) AS e(id, type, audience, data, traceparent)
     RETURNING id, created_at`,
    [
      ids,
      events.map((e) => e.type),
      events.map((e) => JSON.stringify(e.audience)),
      events.map((e) => JSON.stringify(e.data)),
      traceparent ? ids.map(() => traceparent) : [],
    ],
  );
  tx.afterCommit(announceNewEvents);
  tx.afterCommit(wakeLocalReaders);
  const createdAt = new Map(rows.map((r) => [r.id, r.created_at]));
  return events.map((e, i) => ({
    id: ids[i]!,
    type: e.type,
    createdAt: createdAt.get(ids[i]!)!.toISOString(),
    data: e.data,
  }));
}

export async function findEvent(db: Tx | { query: Tx['query'] }, id: string): Promise<PublishedEvent | undefined> {
  return (await findEvents(db, [id]))[0];
}

export async function findEvents(db: Tx | { query: Tx['query'] }, ids: string[]): Promise<PublishedEvent[]> {
  const rows = await db.query<{ id: string; type: string; data: unknown; created_at: Date }>(
    'SELECT id, type, data, created_at FROM events WHERE id = ANY($1::text[])',
    [ids],
  );
  return rows.map((row) => ({ id: row.id, type: row.type, createdAt: row.created_at.toISOString(), data: row.data }));
}

// Readers of the outbox in this process (the webhook dispatcher) hear of a local commit at once,
// without waiting for their next poll. A listener must be cheap and must not throw.
const localReaders = new Set<() => void>();

/** Calls fn after every commit of this process that published an event; answers the function that stops it. */
export function onLocalPublish(fn: () => void): () => void {
  localReaders.add(fn);
  return () => {
    localReaders.delete(fn);
  };
}

function wakeLocalReaders(): void {
  for (const fn of localReaders) fn();
}

// Live streams in every process learn of new events by a NOTIFY on this channel (the payload is
// empty: a listener reads the outbox itself). It is sent after the commit, not inside the business
// transaction: a notifying transaction takes one database-wide lock from before its commit until
// after its WAL flush, so NOTIFY inside every order serialized all commits (pgbench: 460 tx/s with
// it, lock waits 70% of the time). Here each process has at most one NOTIFY in flight, and events
// committed meanwhile share the next one. A crash between a commit and its NOTIFY delays the event
// until the next NOTIFY or the hub's safety poll; it is never lost (the outbox is the truth).
export const eventChannel = 'engine_room_events';

const announcing = new WeakMap<Queryable, { inFlight: boolean; again: boolean }>();

export function announceNewEvents(db: Queryable): void {
  let state = announcing.get(db);
  if (!state) announcing.set(db, (state = { inFlight: false, again: false }));
  if (state.inFlight) {
    state.again = true;
    return;
  }
  state.inFlight = true;
  const s = state;
  void db
    .query('SELECT pg_notify($1, $2)', [eventChannel, ''])
    .catch(() => {}) // the safety poll of every hub covers a NOTIFY that could not be sent
    .finally(() => {
      s.inFlight = false;
      if (s.again) {
        s.again = false;
        announceNewEvents(db);
      }
    });
}
