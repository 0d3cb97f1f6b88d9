// Publishing an event: one row in the events outbox and one job to fan it out, both in the
// caller's transaction. Who listens (webhooks, the live stream) is wired at start-up; this file
// knows no event types.
import type { Tx } from './db.js';
import { newId } from './ids.js';
import { enqueue, type QueueSpec } from './queue.js';

export const eventFanoutQueue = 'events.fanout';

export const eventQueues: QueueSpec[] = [
  { name: eventFanoutQueue, retryLimit: 20, retryDelaySeconds: 1, leaseSeconds: 60 },
];

export interface PublishedEvent { id: string; type: string; createdAt: string; data: unknown }

export async function publishEvent(tx: Tx, type: string, data: object, audience: string[] = []): Promise<PublishedEvent> {
  const id = newId('evt');
  // The NOTIFY wakes live-stream listeners in every process once this transaction commits
  // (PostgreSQL delivers it only at commit, and never for a rolled-back transaction).
  const [row] = await tx.query<{ created_at: Date }>(
    `WITH e AS (INSERT INTO events (id, type, audience, data) VALUES ($1, $2, $3, $4) RETURNING created_at)
     SELECT created_at, pg_notify('engine_room_events', $1) FROM e`,
    [id, type, audience, JSON.stringify(data)],
  );
  await enqueue(tx, eventFanoutQueue, { eventId: id });
  return { id, type, createdAt: row!.created_at.toISOString(), data };
}

export async function findEvent(db: Tx | { query: Tx['query'] }, id: string): Promise<PublishedEvent | undefined> {
  const [row] = await db.query<{ id: string; type: string; data: unknown; created_at: Date }>('SELECT id, type, data, created_at FROM events WHERE id = $1', [id]);
  return row && { id: row.id, type: row.type, createdAt: row.created_at.toISOString(), data: row.data };
}
