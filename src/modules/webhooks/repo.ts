// SQL of webhooks: endpoints, deliveries (one per endpoint and event) and their attempts.
import type { Queryable, Tx } from '../../platform/db.ts';
import type {
  EventsRow,
  Refine,
  WebhookDeliveriesRow,
  WebhookDeliveryAttemptsRow,
  WebhookEndpointsRow,
} from '../../db/rows.ts';
import { eventsAfterSql, type OutboxPosition } from '../../platform/outbox.ts';

/** An endpoint as the API shows it (created_tx, the dispatcher's own, is left out). */
export type EndpointRow = Pick<
  WebhookEndpointsRow,
  | 'id'
  | 'url'
  | 'events'
  | 'secret'
  | 'enabled'
  | 'failing_since'
  | 'disabled_at'
  | 'disabled_reason'
  | 'previous_secret'
  | 'previous_secret_expires_at'
  | 'secret_rotated_at'
  | 'last_success_at'
  | 'last_failure_at'
  | 'created_at'
  | 'updated_at'
>;

/** An endpoint with the count of deliveries it is failing (tried, not succeeded). */
export interface EndpointHealthRow extends EndpointRow {
  failing_deliveries: number;
}

// Served by the partial index webhook_deliveries_failing (migration 0042).
const failingDeliveries = `(SELECT count(*)::int FROM webhook_deliveries d
    WHERE d.endpoint_id = w.id AND d.status <> 'succeeded' AND d.attempts > 0) AS failing_deliveries`;

/** request_headers is null on attempts logged before migration 0042. */
export type AttemptRow = Refine<WebhookDeliveryAttemptsRow, { request_headers: Record<string, string> | null }>;

export type DeliveryStatus = 'pending' | 'succeeded' | 'failed';

export async function insertEndpoint(
  db: Queryable,
  e: { id: string; url: string; events: string[]; secret: string },
): Promise<EndpointRow> {
  const [row] = await db.query<EndpointRow>(
    'INSERT INTO webhook_endpoints (id, url, events, secret) VALUES ($1, $2, $3, $4) RETURNING *',
    [e.id, e.url, e.events, e.secret],
  );
  return row!;
}

export async function findEndpoint(db: Queryable, id: string): Promise<EndpointRow | undefined> {
  const [row] = await db.query<EndpointRow>('SELECT * FROM webhook_endpoints WHERE id = $1', [id]);
  return row;
}

export async function findEndpointHealth(db: Queryable, id: string): Promise<EndpointHealthRow | undefined> {
  const [row] = await db.query<EndpointHealthRow>(
    `SELECT w.*, ${failingDeliveries} FROM webhook_endpoints w WHERE w.id = $1`,
    [id],
  );
  return row;
}

export function listEndpoints(db: Queryable, after: string | null, limit: number): Promise<EndpointHealthRow[]> {
  return db.query<EndpointHealthRow>(
    `SELECT w.*, ${failingDeliveries} FROM webhook_endpoints w
      WHERE ($1::text IS NULL OR w.id < $1) ORDER BY w.id DESC LIMIT $2`,
    [after, limit + 1],
  );
}

/**
 * Applies the fields given. Disabling records who did it; enabling clears the reason and the
 * failure streak (as does a new URL), so that an endpoint just repaired is not disabled again by
 * its next failure.
 */
export async function updateEndpoint(
  db: Queryable,
  id: string,
  change: { url?: string; events?: string[]; enabled?: boolean },
): Promise<EndpointRow | undefined> {
  const [row] = await db.query<EndpointRow>(
    `UPDATE webhook_endpoints SET
        url = COALESCE($2, url),
        events = COALESCE($3, events),
        enabled = COALESCE($4, enabled),
        disabled_at = CASE WHEN $4::boolean IS NULL THEN disabled_at WHEN $4 THEN NULL ELSE COALESCE(disabled_at, now()) END,
        disabled_reason = CASE WHEN $4::boolean IS NULL THEN disabled_reason WHEN $4 THEN NULL ELSE COALESCE(disabled_reason, 'Disabled by an administrator') END,
        failing_since = CASE WHEN ($4 AND NOT enabled) OR $2 <> url THEN NULL ELSE failing_since END,
        updated_at = now()
      WHERE id = $1 RETURNING *`,
    [id, change.url ?? null, change.events ?? null, change.enabled ?? null],
  );
  return row;
}

/**
 * Replaces the endpoint's secret with `secret`. With a grace period, the secret it replaces keeps
 * signing (as previous_secret) until then; with none, every old secret ends now. Refused (answers
 * { rotated: false } with the row) while an earlier rotation's grace period runs, unless the grace
 * period is 0: one statement, under the row's lock, so of two rotations at once the second sees
 * the first's grace period and is refused, and nobody is handed a secret that was already replaced.
 */
export async function rotateSecret(
  tx: Tx,
  id: string,
  secret: string,
  gracePeriodSeconds: number,
): Promise<{ rotated: boolean; row: EndpointRow } | undefined> {
  const [rotated] = await tx.query<EndpointRow>(
    `UPDATE webhook_endpoints SET
        previous_secret = CASE WHEN $3::int > 0 THEN secret END,
        previous_secret_expires_at = CASE WHEN $3::int > 0 THEN now() + make_interval(secs => $3::int) END,
        secret = $2, secret_rotated_at = now(), updated_at = now()
      WHERE id = $1 AND ($3::int = 0 OR previous_secret_expires_at IS NULL OR previous_secret_expires_at <= now())
      RETURNING *`,
    [id, secret, gracePeriodSeconds],
  );
  if (rotated) return { rotated: true, row: rotated };
  const row = await findEndpoint(tx, id);
  return row && { rotated: false, row };
}

export async function deleteEndpoint(db: Queryable, id: string): Promise<boolean> {
  return (await db.query('DELETE FROM webhook_endpoints WHERE id = $1 RETURNING 1', [id])).length > 0;
}

export function listAttempts(
  db: Queryable,
  endpointId: string,
  opts: { eventId: string | null; after: string | null; limit: number },
): Promise<AttemptRow[]> {
  return db.query<AttemptRow>(
    `SELECT * FROM webhook_delivery_attempts
      WHERE endpoint_id = $1 AND ($2::text IS NULL OR event_id = $2) AND ($3::text IS NULL OR id < $3)
      ORDER BY id DESC LIMIT $4`,
    [endpointId, opts.eventId, opts.after, opts.limit + 1],
  );
}

// ---------------------------------------------------------------------------------------------
// Dispatch (the outbox reader) and delivery

export interface DispatchedBatch {
  /** Events read (every type), and the position of the last one (null when none). */
  events: number;
  last_tx: string | null;
  last_id: string | null;
  /** The deliveries made, in event order, with the trace of their event (tracing on). */
  made: { endpointId: string; eventId: string; round: number; traceparent: string | null }[];
}

/**
 * Reads up to `limit` events after the position, up to the horizon (platform/outbox.ts), and makes one delivery per event of a
 * webhook type and enabled endpoint subscribed to it (by name, or '*'), unless it exists already:
 * the unique key (endpoint, event) makes a second read of the same event make nothing, and a
 * manual redelivery made first keeps its round. An endpoint gets only the events published after
 * it was created (events of transactions that began writing after the one that created it, by
 * transaction id: strict, where created_at can tie), however late the dispatcher reads them.
 */
export async function readAndMakeDeliveries(
  tx: Tx,
  from: OutboxPosition,
  limit: number,
  types: readonly string[],
): Promise<DispatchedBatch> {
  const [row] = await tx.query<DispatchedBatch>(
    `WITH batch AS (
       ${eventsAfterSql('tx, id, type, traceparent', { tx: '$1', id: '$2', limit: '$3' })}
     ), made AS (
       INSERT INTO webhook_deliveries (endpoint_id, event_id)
       SELECT w.id, b.id FROM batch b
         JOIN webhook_endpoints w ON w.enabled AND (w.events @> ARRAY[b.type] OR w.events @> ARRAY['*']) AND w.created_tx < b.tx
        WHERE b.type = ANY($4::text[])
        ORDER BY b.tx, b.id, w.id
       ON CONFLICT (endpoint_id, event_id) DO NOTHING
       RETURNING endpoint_id, event_id, round
     ), last AS (
       SELECT tx, id FROM batch ORDER BY tx DESC, id DESC LIMIT 1
     )
     SELECT (SELECT count(*)::int FROM batch) AS events,
            (SELECT tx::text FROM last) AS last_tx,
            (SELECT id FROM last) AS last_id,
            COALESCE((SELECT json_agg(json_build_object('endpointId', m.endpoint_id, 'eventId', m.event_id, 'round', m.round, 'traceparent', e.traceparent)
                                      ORDER BY e.tx, e.id, m.endpoint_id)
                        FROM made m JOIN batch e ON e.id = m.event_id), '[]'::json) AS made`,
    [from.tx, from.id, limit, types],
  );
  return row!;
}

/**
 * Makes the delivery pending again under a new round (creating it if the endpoint never had one),
 * so that jobs of earlier rounds stand down. Answers the new round and the attempts so far.
 */
export async function startNewRound(
  tx: Tx,
  endpointId: string,
  eventId: string,
): Promise<{ round: number; attempts: number }> {
  const [row] = await tx.query<{ round: number; attempts: number }>(
    `INSERT INTO webhook_deliveries (endpoint_id, event_id) VALUES ($1, $2)
     ON CONFLICT (endpoint_id, event_id) DO UPDATE SET round = webhook_deliveries.round + 1, status = 'pending', updated_at = now()
     RETURNING round, attempts`,
    [endpointId, eventId],
  );
  return row!;
}

export async function hasDelivery(db: Queryable, endpointId: string, eventId: string): Promise<boolean> {
  return (
    (await db.query('SELECT 1 FROM webhook_deliveries WHERE endpoint_id = $1 AND event_id = $2', [endpointId, eventId]))
      .length > 0
  );
}

export interface DeliveryToSend
  extends
    Pick<DeliveryRow, 'status' | 'round'>,
    Pick<WebhookEndpointsRow, 'url' | 'secret' | 'previous_secret' | 'enabled'> {
  /** previous_secret only while its grace period runs (by the database's clock), else null. */
  previous_secret: string | null;
  event_id: EventsRow['id'];
  event_type: EventsRow['type'];
  event_data: EventsRow['data'];
  event_created_at: EventsRow['created_at'];
}

/** Everything one attempt needs, read without a lock: the HTTP request is made outside any transaction. */
export async function findDeliveryToSend(
  db: Queryable,
  endpointId: string,
  eventId: string,
): Promise<DeliveryToSend | undefined> {
  const [row] = await db.query<DeliveryToSend>(
    `SELECT d.status, d.round, e.url, e.secret, e.enabled,
            CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END AS previous_secret,
            ev.id AS event_id, ev.type AS event_type, ev.data AS event_data, ev.created_at AS event_created_at
       FROM webhook_deliveries d
       JOIN webhook_endpoints e ON e.id = d.endpoint_id
       JOIN events ev ON ev.id = d.event_id
      WHERE d.endpoint_id = $1 AND d.event_id = $2`,
    [endpointId, eventId],
  );
  return row;
}

/** Ends the delivery as failed, if it is still pending in this round. */
export async function failDelivery(db: Queryable, endpointId: string, eventId: string, round: number): Promise<void> {
  await db.query(
    `UPDATE webhook_deliveries SET status = 'failed', updated_at = now()
      WHERE endpoint_id = $1 AND event_id = $2 AND round = $3 AND status = 'pending'`,
    [endpointId, eventId, round],
  );
}

/**
 * Counts one attempt on the delivery and, when it succeeded in the delivery's current round, marks
 * it succeeded. Answers the attempt's number, or undefined when the delivery is gone (its endpoint
 * was deleted meanwhile).
 */
export async function countAttempt(
  tx: Tx,
  endpointId: string,
  eventId: string,
  round: number,
  succeeded: boolean,
): Promise<number | undefined> {
  const [row] = await tx.query<{ attempts: number }>(
    `UPDATE webhook_deliveries
        SET attempts = attempts + 1,
            status = CASE WHEN $4 AND round = $3 THEN 'succeeded' ELSE status END,
            updated_at = now()
      WHERE endpoint_id = $1 AND event_id = $2
      RETURNING attempts`,
    [endpointId, eventId, round, succeeded],
  );
  return row?.attempts;
}

export async function insertAttempt(tx: Tx, a: AttemptRow): Promise<void> {
  await tx.query(
    `INSERT INTO webhook_delivery_attempts (id, endpoint_id, event_id, event_type, attempt, succeeded, status_code, error, duration_ms, started_at, finished_at,
                                            request_headers, response_excerpt, response_truncated)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
    [
      a.id,
      a.endpoint_id,
      a.event_id,
      a.event_type,
      a.attempt,
      a.succeeded,
      a.status_code,
      a.error,
      a.duration_ms,
      a.started_at,
      a.finished_at,
      a.request_headers === null ? null : JSON.stringify(a.request_headers),
      a.response_excerpt,
      a.response_truncated,
    ],
  );
}

/**
 * A success: ends the failure streak and records when. last_success_at is moved at most once a
 * second: concurrent deliveries to one endpoint would otherwise queue on its row's lock.
 */
export async function clearFailureStreak(tx: Tx, endpointId: string): Promise<void> {
  await tx.query(
    `UPDATE webhook_endpoints SET failing_since = NULL, last_success_at = now()
      WHERE id = $1 AND (failing_since IS NOT NULL OR last_success_at IS NULL OR last_success_at < now() - interval '1 second')`,
    [endpointId],
  );
}

/**
 * Starts the endpoint's failure streak if none is running, and disables the endpoint when the
 * streak has lasted longer than the window (by the database's clock, which every process shares).
 * Answers whether the endpoint is disabled now.
 */
export async function recordFailure(
  tx: Tx,
  endpointId: string,
  disableAfterSeconds: number,
  reasonOf: (failingSince: Date) => string,
): Promise<boolean> {
  const [row] = await tx.query<{ enabled: boolean; failing_since: Date; overdue: boolean }>(
    `UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, now()), last_failure_at = now()
      WHERE id = $1
      RETURNING enabled, failing_since, failing_since < now() - make_interval(secs => $2) AS overdue`,
    [endpointId, disableAfterSeconds],
  );
  if (!row) return true;
  if (!row.enabled) return true;
  if (!row.overdue) return false;
  await tx.query(
    `UPDATE webhook_endpoints SET enabled = false, disabled_at = now(), disabled_reason = $2, updated_at = now()
      WHERE id = $1 AND enabled`,
    [endpointId, reasonOf(row.failing_since)],
  );
  return true;
}

export type DeliveryRow = Refine<WebhookDeliveriesRow, { status: DeliveryStatus }>;

export async function findDelivery(
  db: Queryable,
  endpointId: string,
  eventId: string,
): Promise<(DeliveryRow & { event_type: string; event_data: unknown; event_created_at: Date }) | undefined> {
  const [row] = await db.query<DeliveryRow & { event_type: string; event_data: unknown; event_created_at: Date }>(
    `SELECT d.*, ev.type AS event_type, ev.data AS event_data, ev.created_at AS event_created_at
       FROM webhook_deliveries d JOIN events ev ON ev.id = d.event_id
      WHERE d.endpoint_id = $1 AND d.event_id = $2`,
    [endpointId, eventId],
  );
  return row;
}
