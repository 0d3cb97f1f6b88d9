// SQL of the operations page and /metrics/system: what the processes flushed (ops_rollups,
// ops_processes), what the outbox reader added up (ops_order_stats), the totals (ops_totals), the
// job queue's own tables, the webhook endpoints, the audit runs. Each query reads one window or
// the current state; none of them scans a business table.
import type { Queryable } from '../../platform/db.ts';
import type { OpsAuditRunsRow, OpsProcessesRow, Refine, WebhookEndpointsRow } from '../../db/rows.ts';
import { aliveSeconds } from './telemetry.ts';

/** Counter sums per time bucket of `stepSeconds` since `from`: one row per bucket and "<metric>\t<label>". */
export function counterBuckets(db: Queryable, from: Date, stepSeconds: number) {
  return db.query<{ bucket: Date; key: string; count: number; sum: number }>(
    `SELECT date_bin(make_interval(secs => $2), r.at, timestamptz 'epoch') AS bucket, c.key,
            sum((c.value->>0)::bigint)::bigint AS count, sum((c.value->>1)::bigint)::bigint AS sum
       FROM ops_rollups r, jsonb_each(r.counters) c
      WHERE r.at >= $1
      GROUP BY 1, 2`,
    [from, stepSeconds],
  );
}

/** The latency histogram (request counts per bucket of latencyBucketsMs, and the rest) since `from`. */
export async function latencyHistogram(db: Queryable, from: Date): Promise<number[]> {
  const rows = await db.query<{ i: number; n: number }>(
    `SELECT u.i::int AS i, sum(u.n)::bigint AS n FROM ops_rollups r, unnest(r.latency) WITH ORDINALITY AS u(n, i)
      WHERE r.at >= $1 GROUP BY u.i ORDER BY u.i`,
    [from],
  );
  const out: number[] = [];
  for (const row of rows) out[row.i - 1] = row.n;
  return Array.from(out, (n) => n ?? 0);
}

export function orderBuckets(db: Queryable, from: Date, stepSeconds: number) {
  return db.query<{ bucket: Date; type: string; currency: string; count: number; amount: number }>(
    `SELECT date_bin(make_interval(secs => $2), bucket, timestamptz 'epoch') AS bucket, type, currency,
            sum(count)::bigint AS count, sum(amount)::bigint AS amount
       FROM ops_order_stats WHERE bucket >= $1 GROUP BY 1, 2, 3`,
    [from, stepSeconds],
  );
}

export interface QueueRow {
  name: string;
  waiting: number;
  retrying: number;
  lag_seconds: number | null;
}

/** Jobs waiting (created) and waiting for a retry, and the age of the oldest that may run now, per queue (dead-letter queues included). */
export function queueCounts(db: Queryable) {
  // state < 'active' is what the job partitions' partial index (i5) covers: completed jobs, which
  // pile up until they are archived, are never read.
  return db.query<QueueRow>(
    `SELECT q.name,
            count(j.id) FILTER (WHERE j.state = 'created')::int AS waiting,
            count(j.id) FILTER (WHERE j.state = 'retry')::int AS retrying,
            extract(epoch FROM now() - min(j.start_after) FILTER (WHERE j.state = 'created' AND j.start_after <= now()))::float8 AS lag_seconds
       FROM pgboss.queue q LEFT JOIN pgboss.job j ON j.name = q.name AND j.state < 'active'
      WHERE q.name NOT LIKE '\\_\\_pgboss%'
      GROUP BY q.name ORDER BY q.name`,
  );
}

export type ProcessRow = Refine<OpsProcessesRow, { running_jobs: Record<string, number> }>;

export function liveProcesses(db: Queryable) {
  return db.query<ProcessRow>(
    `SELECT * FROM ops_processes WHERE seen_at > now() - make_interval(secs => $1) ORDER BY started_at, id`,
    [aliveSeconds],
  );
}

export interface WebhookProblemRow extends Pick<
  WebhookEndpointsRow,
  'id' | 'url' | 'enabled' | 'failing_since' | 'disabled_reason'
> {
  last_error: string | null;
  last_status: number | null;
  last_attempt_at: Date | null;
}

export async function webhookEndpointCounts(db: Queryable) {
  const [row] = await db.query<{ total: number; failing: number; disabled: number }>(
    `SELECT count(*)::int AS total,
            count(*) FILTER (WHERE enabled AND failing_since IS NOT NULL)::int AS failing,
            count(*) FILTER (WHERE NOT enabled)::int AS disabled
       FROM webhook_endpoints`,
  );
  return row ?? { total: 0, failing: 0, disabled: 0 };
}

/** Endpoints whose deliveries are failing, or that are disabled, with their last failed attempt. */
export function webhookProblems(db: Queryable, limit: number) {
  return db.query<WebhookProblemRow>(
    `SELECT e.id, e.url, e.enabled, e.failing_since, e.disabled_reason,
            a.error AS last_error, a.status_code AS last_status, a.finished_at AS last_attempt_at
       FROM webhook_endpoints e
       LEFT JOIN LATERAL (
         SELECT error, status_code, finished_at FROM webhook_delivery_attempts
          WHERE endpoint_id = e.id AND NOT succeeded ORDER BY id DESC LIMIT 1
       ) a ON true
      WHERE e.failing_since IS NOT NULL OR NOT e.enabled
      ORDER BY e.enabled, e.failing_since NULLS LAST, e.id
      LIMIT $1`,
    [limit],
  );
}

export async function openEventStreams(db: Queryable, freshSeconds: number): Promise<number> {
  const [row] = await db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM event_stream_connections WHERE seen_at > now() - make_interval(secs => $1)',
    [freshSeconds],
  );
  return row?.n ?? 0;
}

// The database's size moves slowly and costs a walk of its files (5 ms of CPU on the embedded
// database, a third of a whole overview): read at most once a minute per database.
const sizes = new WeakMap<Queryable, { bytes: number; readAt: number }>();
const sizeFreshMs = 60_000;

export async function databaseFigures(db: Queryable, engine: 'postgres' | 'pglite') {
  let size = sizes.get(db);
  if (!size || Date.now() - size.readAt > sizeFreshMs) {
    const [row] = await db.query<{ bytes: number }>('SELECT pg_database_size(current_database())::bigint AS bytes');
    size = { bytes: row?.bytes ?? 0, readAt: Date.now() };
    sizes.set(db, size);
  }
  const [sessions] =
    engine === 'postgres'
      ? await db.query<{ connections: number; active: number }>(
          `SELECT count(*)::int AS connections, count(*) FILTER (WHERE state = 'active')::int AS active
         FROM pg_stat_activity WHERE datname = current_database()`,
        )
      : [];
  return { size_bytes: size.bytes, connections: sessions?.connections ?? null, active: sessions?.active ?? null };
}

export type AuditRunRow = Refine<
  OpsAuditRunsRow,
  { checks: { name: string; ok: boolean; skipped?: string; violations: unknown[] }[] }
>;

export async function lastAuditRun(db: Queryable): Promise<AuditRunRow | undefined> {
  const [row] = await db.query<AuditRunRow>('SELECT * FROM ops_audit_runs ORDER BY id DESC LIMIT 1');
  return row;
}

export async function insertAuditRun(
  db: Queryable,
  run: { ok: boolean; checks: unknown[]; durationMs: number },
): Promise<AuditRunRow> {
  const [row] = await db.query<AuditRunRow>(
    'INSERT INTO ops_audit_runs (ok, checks, duration_ms) VALUES ($1, $2, $3) RETURNING *',
    [run.ok, JSON.stringify(run.checks), run.durationMs],
  );
  return row!;
}

export function totals(db: Queryable) {
  return db.query<{ metric: string; label: string; count: number; sum: number }>(
    'SELECT metric, label, count, sum FROM ops_totals ORDER BY metric, label',
  );
}
