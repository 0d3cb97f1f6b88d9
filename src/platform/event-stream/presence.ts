// Presence: each open stream has a row in event_stream_connections, refreshed at every heartbeat,
// so other processes (the email jobs) can tell whether a user is watching.
import type { Queryable } from '../db.ts';

export async function enterPresence(db: Queryable, streamId: string, userId: string): Promise<void> {
  await db.query('INSERT INTO event_stream_connections (id, user_id) VALUES ($1, $2)', [streamId, userId]);
}

export async function leavePresence(db: Queryable, streamId: string): Promise<void> {
  await db.query('DELETE FROM event_stream_connections WHERE id = $1', [streamId]);
}

/** Marks the streams seen now, and removes rows no process has refreshed for ten heartbeats (at least 10 minutes). */
export async function refreshPresence(db: Queryable, streamIds: string[], heartbeatSeconds: number): Promise<void> {
  await db.query('UPDATE event_stream_connections SET seen_at = now() WHERE id = ANY($1::text[])', [streamIds]);
  await db.query('DELETE FROM event_stream_connections WHERE seen_at < now() - make_interval(secs => $1)', [
    Math.max(600, heartbeatSeconds * 10),
  ]);
}

/** Whether the user has a live stream open in any process (seen within two heartbeats). */
export async function hasLiveStream(db: Queryable, userId: string, heartbeatSeconds: number): Promise<boolean> {
  const [row] = await db.query<{ live: boolean }>(
    'SELECT EXISTS (SELECT 1 FROM event_stream_connections WHERE user_id = $1 AND seen_at > now() - make_interval(secs => $2)) AS live',
    [userId, heartbeatSeconds * 2 + 5],
  );
  return row!.live; // EXISTS: always one row
}
