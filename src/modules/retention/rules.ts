// What the retention job deletes, table by table: every table that only grows and whose old rows
// nobody needs, in one list. A table joins by adding a rule here (its setting goes in config.ts and
// the README). Kept for good, and so absent: orders and their lines, payments, refunds, the ledger
// and stock movements (the books: the audit recomputes balances and on-hand stock from all of
// them), the sandbox processor's charges (its own books, reconciled against ours), users,
// products, conversations and messages (customer content: erasing it is a per-customer decision,
// not one by age). pg-boss's finished jobs are pruned by pg-boss itself (JOB_RETENTION_DAYS, see
// worker.ts).
//
// Each rule removes at most `limit` rows in one statement, which is its own short transaction: a
// batch holds its row locks for milliseconds, and no transaction stays open between batches, so
// neither writers nor the outbox readers' horizon (pg_snapshot_xmin, migration 0009) wait on a
// prune. Rows are picked through an index (or a primary-key range over time-sorted ids) and
// `FOR UPDATE SKIP LOCKED`, so prunes in several processes at once take different rows.
import type { Queryable } from '../../platform/db.ts';
import { firstIdAt } from '../../platform/ids.ts';
import type { Config } from '../../config.ts';

export type RetentionSettings = Pick<
  Config,
  | 'eventRetentionDays'
  | 'webhookAttemptRetentionDays'
  | 'emailRetentionDays'
  | 'sessionRetentionDays'
  | 'idempotencyRetentionHours'
  | 'opsFiguresRetentionHours'
  | 'auditRunRetentionDays'
>;

export interface RetentionRule {
  /** The table, as logs and docs name it. */
  table: string;
  /** Removes up to `limit` rows past their retention in one statement; answers how many. */
  prune(db: Queryable, limit: number, settings: Readonly<RetentionSettings>): Promise<number>;
}

const hour = 3600 * 1000;

async function deleted(db: Queryable, sql: string, params: unknown[]): Promise<number> {
  const [row] = await db.query<{ n: number }>(
    `WITH gone AS (${sql} RETURNING 1) SELECT count(*)::int AS n FROM gone`,
    params,
  );
  return row?.n ?? 0;
}

/**
 * The readers of the events outbox that keep a position (tx, id): an event is deleted only once
 * every one of them has passed it. A new reader with a cursor table adds it here.
 */
export const outboxReaderPositions = ['webhook_dispatch_cursor', 'ops_outbox_cursor', 'email_outbox_cursor'] as const;

export const retentionRules: readonly RetentionRule[] = [
  {
    // Before events: an email holds its event (a foreign key without cascade).
    table: 'emails',
    prune: (db, limit, s) =>
      deleted(
        db,
        `DELETE FROM emails WHERE id IN (SELECT id FROM emails WHERE id < $2 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)`,
        [limit, firstIdAt('eml', Date.now() - s.emailRetentionDays * 24 * hour)],
      ),
  },
  {
    table: 'webhook_delivery_attempts',
    prune: (db, limit, s) =>
      deleted(
        db,
        `DELETE FROM webhook_delivery_attempts WHERE id IN (
         SELECT id FROM webhook_delivery_attempts WHERE id < $2 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)`,
        [limit, firstIdAt('whd', Date.now() - s.webhookAttemptRetentionDays * 24 * hour)],
      ),
  },
  {
    // Only events every outbox reader has passed (the webhook dispatcher and the email reader: else
    // their deliveries and emails would never be made), with no delivery still being retried and no
    // email left (a delivery and its attempts go with their event, by cascade). The live stream's Last-Event-ID replay reads
    // EVENT_STREAM_RETENTION_HOURS back, which config.ts keeps within EVENT_RETENTION_DAYS.
    table: 'events',
    prune: (db, limit, s) =>
      deleted(
        db,
        `DELETE FROM events WHERE ctid IN (
         SELECT e.ctid FROM events e
          WHERE e.created_at < now() - make_interval(days => $2)
            ${outboxReaderPositions.map((t) => `AND (e.tx, e.id) <= (SELECT tx, id FROM ${t})`).join(' ')}
            AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id AND d.status = 'pending')
            AND NOT EXISTS (SELECT 1 FROM emails m WHERE m.event_id = e.id)
          ORDER BY e.created_at LIMIT $1 FOR UPDATE OF e SKIP LOCKED)`,
        [limit, s.eventRetentionDays],
      ),
  },
  {
    // The contract keeps a key at least 24 hours (config.ts enforces the floor).
    table: 'idempotency_keys',
    prune: (db, limit, s) =>
      deleted(
        db,
        `DELETE FROM idempotency_keys WHERE ctid IN (
         SELECT ctid FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $2)
          ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED)`,
        [limit, Math.max(24, s.idempotencyRetentionHours)],
      ),
  },
  {
    table: 'sessions',
    prune: (db, limit, s) =>
      deleted(
        db,
        `DELETE FROM sessions WHERE id IN (
         SELECT id FROM sessions WHERE expires_at < now() - make_interval(days => $2)
          ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)`,
        [limit, s.sessionRetentionDays],
      ),
  },
  {
    // Password reset and email verification tokens: useless once expired (an hour, a week); kept a
    // day more so that "expired" can be told from "unknown" while someone looks into a complaint.
    table: 'account_tokens',
    prune: (db, limit) =>
      deleted(
        db,
        `DELETE FROM account_tokens WHERE id IN (
         SELECT id FROM account_tokens WHERE expires_at < now() - interval '1 day'
          ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)`,
        [limit],
      ),
  },
  {
    // A counter whose window started more than a day ago counts nothing (every window is at most
    // a day long: config.ts), so no setting: it is kept an hour past that.
    table: 'rate_limit_hits',
    prune: (db, limit) =>
      deleted(
        db,
        `DELETE FROM rate_limit_hits WHERE bucket IN (
         SELECT bucket FROM rate_limit_hits WHERE window_start < now() - interval '25 hours'
          ORDER BY window_start LIMIT $1 FOR UPDATE SKIP LOCKED)`,
        [limit],
      ),
  },
  {
    // Presence rows of live streams whose process died without removing them; a live stream
    // refreshes its row every few heartbeats, so an hour without one means it is gone. No setting.
    table: 'event_stream_connections',
    prune: (db, limit) =>
      deleted(
        db,
        `DELETE FROM event_stream_connections WHERE id IN (
         SELECT id FROM event_stream_connections WHERE seen_at < now() - interval '1 hour' LIMIT $1 FOR UPDATE SKIP LOCKED)`,
        [limit],
      ),
  },
  {
    // The operations page's figures: one row per process and flush, and the order figures per
    // 10 s; nothing reads them past the page's longest window (24 h).
    table: 'ops_rollups',
    prune: (db, limit, s) =>
      deleted(
        db,
        `DELETE FROM ops_rollups WHERE ctid IN (
         SELECT ctid FROM ops_rollups WHERE at < now() - make_interval(hours => $2) ORDER BY at LIMIT $1 FOR UPDATE SKIP LOCKED)`,
        [limit, s.opsFiguresRetentionHours],
      ),
  },
  {
    table: 'ops_order_stats',
    prune: (db, limit, s) =>
      deleted(
        db,
        `DELETE FROM ops_order_stats WHERE ctid IN (
         SELECT ctid FROM ops_order_stats WHERE bucket < now() - make_interval(hours => $2) ORDER BY bucket LIMIT $1 FOR UPDATE SKIP LOCKED)`,
        [limit, s.opsFiguresRetentionHours],
      ),
  },
  {
    // A process that has not written its heartbeat for a day is gone (a live one writes every few
    // seconds). No setting.
    table: 'ops_processes',
    prune: (db, limit) =>
      deleted(
        db,
        `DELETE FROM ops_processes WHERE id IN (
         SELECT id FROM ops_processes WHERE seen_at < now() - interval '1 day' LIMIT $1 FOR UPDATE SKIP LOCKED)`,
        [limit],
      ),
  },
  {
    table: 'ops_audit_runs',
    prune: (db, limit, s) =>
      deleted(
        db,
        `DELETE FROM ops_audit_runs WHERE id IN (
         SELECT id FROM ops_audit_runs WHERE ran_at < now() - make_interval(days => $2) ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)`,
        [limit, s.auditRunRetentionDays],
      ),
  },
  {
    // A rotated webhook secret whose grace period is over signs nothing more: it is cleared
    // rather than left in the database.
    table: 'webhook_endpoints (expired previous secrets)',
    prune: async (db, limit) =>
      (
        await db.query(
          `UPDATE webhook_endpoints SET previous_secret = NULL, previous_secret_expires_at = NULL
        WHERE id IN (SELECT id FROM webhook_endpoints WHERE previous_secret_expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)
        RETURNING 1`,
          [limit],
        )
      ).length,
  },
];
