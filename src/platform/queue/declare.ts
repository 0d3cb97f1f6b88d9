// Declaring queues: each queue and its dead-letter queue, with their retry budget and lease, made
// or brought up to date at every start (idempotent, and safe from several processes at once).
import type PgBoss from 'pg-boss';
import type { Db } from '../db.ts';
import { executorOver, idleBoss, schema } from './boss.ts';

export interface QueueSpec {
  name: string;
  /** Attempts after the first before the job is dead-lettered. */
  retryLimit: number;
  /** Base of the exponential backoff between attempts, in whole seconds (at least 1). */
  retryDelaySeconds: number;
  /**
   * How long a worker may hold a job before the attempt counts as failed (its handler is given up,
   * or its process is presumed dead) and the job is retried: the lease. Under 24 hours.
   */
  leaseSeconds: number;
  /** How long a job may wait to be started before pg-boss archives it unstarted (default 14 days). */
  retentionDays?: number;
}

/** The queue where the jobs of queue `name` end when they keep failing. */
export function deadLetterQueueOf(name: string): string {
  return `${name}.dead-letter`;
}

interface QueueRow {
  name: string;
  retry_limit: number;
  retry_delay: number;
  retry_backoff: boolean;
  expire_seconds: number;
  retention_minutes: number | null;
  dead_letter: string | null;
}

function isDeclared(spec: QueueSpec, existing: Map<string, QueueRow>): boolean {
  const row = existing.get(spec.name);
  const deadLetter = deadLetterQueueOf(spec.name);
  return (
    row !== undefined &&
    existing.has(deadLetter) &&
    row.dead_letter === deadLetter &&
    row.retry_backoff === true &&
    row.retry_limit === spec.retryLimit &&
    row.retry_delay === spec.retryDelaySeconds &&
    row.expire_seconds === spec.leaseSeconds &&
    (spec.retentionDays === undefined || row.retention_minutes === spec.retentionDays * 24 * 60)
  );
}

/**
 * Creates the queues and their dead-letter queues, or updates their options (which apply to jobs
 * enqueued from then on). Idempotent and safe from several processes at once; every process that
 * enqueues or works must call it at start, before enqueueing (a job for an undeclared queue is
 * refused). Needs no started queue.
 */
export async function declareQueues(db: Db, specs: readonly QueueSpec[]): Promise<void> {
  const boss = idleBoss(executorOver(db));
  // Every start declares every queue, and pg-boss spends several statements on each: read what is
  // there in one query and leave the queues that are already as declared (most starts: all).
  const rows = await db.query<QueueRow>(
    `SELECT name, retry_limit, retry_delay, retry_backoff, expire_seconds, retention_minutes, dead_letter FROM ${schema}.queue`,
  );
  const existing = new Map(rows.map((r) => [r.name, r]));
  for (const spec of specs) {
    if (!/^[a-z0-9][a-z0-9_.-]*$/.test(spec.name) || spec.name.endsWith('.dead-letter')) {
      throw new Error(
        `queue name "${spec.name}" must be lower-case letters, digits, '_', '.', '-' (and not end in .dead-letter)`,
      );
    }
    if (!Number.isInteger(spec.retryDelaySeconds) || spec.retryDelaySeconds < 1)
      throw new Error(`queue ${spec.name}: retryDelaySeconds must be a whole number >= 1`);
    if (isDeclared(spec, existing)) continue;
    const deadLetter = deadLetterQueueOf(spec.name);
    await boss.createQueue(deadLetter, { name: deadLetter });
    const options = (): PgBoss.Queue => ({
      name: spec.name,
      retryLimit: spec.retryLimit,
      retryDelay: spec.retryDelaySeconds,
      retryBackoff: true,
      expireInSeconds: spec.leaseSeconds,
      ...(spec.retentionDays !== undefined ? { retentionMinutes: spec.retentionDays * 24 * 60 } : {}),
      deadLetter,
    });
    // pg-boss adds fields to the options object it is given, hence a fresh one per call.
    await boss.createQueue(spec.name, options());
    await boss.updateQueue(spec.name, options());
  }
}
