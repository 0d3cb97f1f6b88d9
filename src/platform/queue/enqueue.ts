// Enqueueing (the outbox): jobs inserted in the caller's transaction, so a business change that
// rolls back never enqueues and one that commits always does. Needs no started queue, so API
// processes that run no workers enqueue too.
import { createHash } from 'node:crypto';
import type { Tx } from '../db.ts';
import { withJobTrace } from '../tracing.ts';
import { executorIn, queueExists, senderBoss } from './boss.ts';

export interface EnqueueOptions {
  /**
   * At most one job with this key in the queue: enqueueing it again is ignored while the first job
   * is still in pg-boss's job table (waiting, running, failed, or completed less than the archive
   * delay ago, 12 h by default). The transaction is the primary guarantee; this is for callers
   * that may enqueue the same thing from two transactions.
   */
  dedupeKey?: string;
  /** Do not start before this many seconds from now, or before this moment. */
  startAfter?: number | Date;
  /** Higher runs first among waiting jobs of the queue (default 0). */
  priority?: number;
}

/** A job id that is the same for the same queue and key (a UUID built from their hash). */
function dedupeId(name: string, key: string): string {
  const h = createHash('sha256').update(name).update('\0').update(key).digest('hex');
  // Version 8 ("custom") and the RFC variant, so the value is a well-formed UUID.
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * Inserts a job in the caller's transaction: it becomes visible to workers when that transaction
 * commits, and vanishes with it when it rolls back. Works without a started queue (API-only
 * processes). Answers the job id, or null when dedupeKey matched a job already there.
 */
export async function enqueue(
  tx: Tx,
  name: string,
  data: object,
  options: EnqueueOptions = {},
): Promise<string | null> {
  // With tracing on, the job carries the trace it was enqueued from (tracing.ts).
  const id = await senderBoss().send(name, withJobTrace(data), {
    db: executorIn(tx),
    ...(options.dedupeKey !== undefined ? { id: dedupeId(name, options.dedupeKey) } : {}),
    ...(options.startAfter !== undefined ? { startAfter: options.startAfter } : {}),
    ...(options.priority !== undefined ? { priority: options.priority } : {}),
  });
  if (id !== null) return id;
  // pg-boss's insert joins the queue table, so a job for a queue that does not exist is silently
  // not inserted. Throwing rolls the business change back with it rather than losing the job.
  if (!(await queueExists(tx, name))) throw new Error(`queue "${name}" is not declared (declareQueues at start)`);
  return null;
}

/**
 * A retry budget of one job other than its queue's (the sandbox's drill card uses a short one, so
 * that a drill's charges run out of attempts in seconds rather than half an hour).
 */
export interface RetryBudget {
  retryLimit?: number;
  retryDelaySeconds?: number;
}

/** Queues seen declared by this process: enqueueMany checks each name once. */
const declaredQueues = new Set<string>();

/**
 * Inserts one job per item into queue `name`, in one statement in the caller's transaction (as
 * enqueue does for one; dedupeKey as there; traceparent: the trace each job belongs to, when not the
 * current one, see tracing.ts). pg-boss's batch insert answers nothing, and skips
 * jobs of a queue that does not exist, so the queue is checked (once per process and name).
 */
export async function enqueueMany(
  tx: Tx,
  name: string,
  jobs: readonly ({ data: object; dedupeKey?: string; traceparent?: string } & RetryBudget)[],
): Promise<void> {
  if (jobs.length === 0) return;
  if (!declaredQueues.has(name)) {
    if (!(await queueExists(tx, name))) throw new Error(`queue "${name}" is not declared (declareQueues at start)`);
    declaredQueues.add(name);
  }
  await senderBoss().insert(
    jobs.map((j) => ({
      name,
      data: withJobTrace(j.data, j.traceparent),
      ...(j.dedupeKey !== undefined ? { id: dedupeId(name, j.dedupeKey) } : {}),
      ...(j.retryLimit !== undefined ? { retryLimit: j.retryLimit } : {}),
      ...(j.retryDelaySeconds !== undefined ? { retryDelay: j.retryDelaySeconds } : {}),
    })),
    { db: executorIn(tx) },
  );
}
