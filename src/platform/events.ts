// Publishing an event: one row in the events outbox and one job to fan it out, both in the
// caller's transaction. Who listens (webhooks, the live stream) is wired at start-up; this file
// knows no event types.
import type { Queryable, Tx } from './db.js';
import { newId } from './ids.js';
import { enqueue, type QueueSpec } from './queue.js';

export const eventFanoutQueue = 'events.fanout';

export const eventQueues: QueueSpec[] = [
  { name: eventFanoutQueue, retryLimit: 20, retryDelaySeconds: 1, leaseSeconds: 60 },
];

export interface PublishedEvent { id: string; type: string; createdAt: string; data: unknown }

export async function publishEvent(tx: Tx, type: string, data: object, audience: string[] = []): Promise<PublishedEvent> {
  const id = newId('evt');
  const [row] = await tx.query<{ created_at: Date }>(
    'INSERT INTO events (id, type, audience, data) VALUES ($1, $2, $3, $4) RETURNING created_at',
    [id, type, audience, JSON.stringify(data)],
  );
  await enqueue(tx, eventFanoutQueue, { eventId: id });
  tx.afterCommit(announceNewEvents);
  return { id, type, createdAt: row!.created_at.toISOString(), data };
}

export async function findEvent(db: Tx | { query: Tx['query'] }, id: string): Promise<PublishedEvent | undefined> {
  const [row] = await db.query<{ id: string; type: string; data: unknown; created_at: Date }>('SELECT id, type, data, created_at FROM events WHERE id = $1', [id]);
  return row && { id: row.id, type: row.type, createdAt: row.created_at.toISOString(), data: row.data };
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
  void db.query('SELECT pg_notify($1, $2)', [eventChannel, ''])
    .catch(() => {}) // the safety poll of every hub covers a NOTIFY that could not be sent
    .finally(() => {
      s.inFlight = false;
      if (s.again) {
        s.again = false;
        announceNewEvents(db);
      }
    });
}
