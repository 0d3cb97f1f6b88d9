// What operators see and do: the dead letters (listed, sent back to their queue), one job or one
// queue's jobs by state, and when a waiting job is due. Reads of pg-boss's tables, for the admin
// API and the engine-room jobs command; nothing here runs jobs.
import type { Db, Queryable, Tx } from '../db.ts';
import { schema } from './boss.ts';
import { enqueue } from './enqueue.ts';

export interface FailedJob {
  /** The dead-lettered job's id: what retryJob takes. */
  id: string;
  /** The queue it failed in. */
  queue: string;
  data: unknown;
  /** The error of its last attempt. */
  error: string;
  attempts: number;
  failedAt: Date;
}

/** Where a page of dead letters ends: the (failed at, id) of its last job, as the database printed them. */
export interface FailedJobPosition {
  failedAt: string;
  id: string;
}

/**
 * The jobs that ran out of attempts and wait in a dead-letter queue, latest first, up to limit,
 * after `after` (the position of the last job of an earlier page; each job answers its own).
 */
export async function listFailedJobs(
  db: Queryable,
  options: { limit: number; queue?: string; after?: FailedJobPosition },
): Promise<(FailedJob & { position: FailedJobPosition })[]> {
  const after =
    options.after && uuidPattern.test(options.after.id) && !Number.isNaN(Date.parse(options.after.failedAt))
      ? options.after
      : null;
  const rows = await db.query<{
    id: string;
    queue: string;
    data: unknown;
    error: string | null;
    attempts: number;
    failed_at: Date;
    failed_at_text: string;
  }>(
    `SELECT d.id, q.name AS queue, d.data,
            COALESCE(d.output->>'message', d.output->'value'->>'message', d.output::text) AS error,
            d.retry_limit + 1 AS attempts, d.created_on AS failed_at, d.created_on::text AS failed_at_text
       FROM ${schema}.queue q
       JOIN ${schema}.job d ON d.name = q.dead_letter
      WHERE d.state < 'active' AND ($2::text IS NULL OR q.name = $2)
        AND ($3::timestamptz IS NULL OR (d.created_on, d.id) < ($3::timestamptz, $4::uuid))
      ORDER BY d.created_on DESC, d.id DESC
      LIMIT $1`,
    [options.limit, options.queue ?? null, after?.failedAt ?? null, after?.id ?? null],
  );
  return rows.map((r) => ({
    id: r.id,
    queue: r.queue,
    data: r.data,
    error: r.error ?? '',
    attempts: Number(r.attempts),
    failedAt: r.failed_at,
    position: { failedAt: r.failed_at_text, id: r.id },
  }));
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Sends a dead-lettered job back to its queue as a new job with the queue's full retry budget, and
 * marks the dead-letter entry completed (it leaves the list). Exactly once even when two operators
 * retry at the same moment. Answers the new job's id, or null when no waiting dead-lettered job has
 * this id.
 */
export async function retryJob(db: Db, id: string): Promise<string | null> {
  if (!uuidPattern.test(id)) return null;
  return db.transaction(async (tx) => (await retryDeadLetters(tx, { id }))[0] ?? null);
}

/**
 * retryJob for one dead letter (`id`) or every dead letter of one queue (`queue`), in the caller's
 * transaction: the new jobs and the dead letters' completion commit together or not at all. The
 * dead letters are locked, so two retries at once send each job back once. Answers the new ids.
 */
export async function retryDeadLetters(tx: Tx, which: { id: string } | { queue: string }): Promise<string[]> {
  if ('id' in which && !uuidPattern.test(which.id)) return [];
  const dead = await tx.query<{ id: string; queue: string; dead_letter: string; data: object }>(
    `SELECT d.id, q.name AS queue, d.name AS dead_letter, d.data
       FROM ${schema}.job d JOIN ${schema}.queue q ON q.dead_letter = d.name
      WHERE d.state < 'active' AND ($1::uuid IS NULL OR d.id = $1) AND ($2::text IS NULL OR q.name = $2)
      ORDER BY d.created_on, d.id
      FOR UPDATE OF d`,
    ['id' in which ? which.id : null, 'queue' in which ? which.queue : null],
  );
  const sent: string[] = [];
  for (const job of dead) {
    const newId = await enqueue(tx, job.queue, job.data ?? {});
    await tx.query(
      `UPDATE ${schema}.job SET state = 'completed', completed_on = now(), output = COALESCE(output, '{}'::jsonb) || jsonb_build_object('retriedAs', $3::text)
        WHERE name = $1 AND id = $2`,
      [job.dead_letter, job.id, newId],
    );
    if (newId) sent.push(newId);
  }
  return sent;
}

export type JobState = 'waiting' | 'retrying' | 'running' | 'completed' | 'failed' | 'cancelled';

const stateNames: Record<string, JobState> = {
  created: 'waiting',
  retry: 'retrying',
  active: 'running',
  completed: 'completed',
  failed: 'failed',
  cancelled: 'cancelled',
};

/**
 * One job, live or archived (pg-boss archives finished jobs after 12 h and deletes them after 7
 * days). Give its queue when known: the job tables are keyed by (queue, id).
 */
export async function findJob(
  db: Queryable,
  id: string,
  queue?: string,
): Promise<
  | {
      id: string;
      queue: string;
      state: JobState;
      data: unknown;
      attempts: number;
      createdAt: Date;
      finishedAt: Date | null;
      error: string | null;
    }
  | undefined
> {
  if (!uuidPattern.test(id)) return undefined;
  const where = queue === undefined ? 'id = $1' : 'name = $2 AND id = $1';
  const columns = `id, name, state::text AS state, data, retry_count, created_on, completed_on,
            CASE WHEN state IN ('failed', 'retry') THEN COALESCE(output->>'message', output::text) END AS error`;
  const [row] = await db.query<{
    id: string;
    name: string;
    state: string;
    data: unknown;
    retry_count: number;
    created_on: Date;
    completed_on: Date | null;
    error: string | null;
  }>(
    `SELECT ${columns} FROM ${schema}.job WHERE ${where}
     UNION ALL
     SELECT ${columns} FROM ${schema}.archive WHERE ${where}
     LIMIT 1`,
    queue === undefined ? [id] : [id, queue],
  );
  if (!row) return undefined;
  // An attempt counts when it starts: a job waiting again after failures has made retry_count of them.
  const attempts = row.state === 'created' || row.state === 'retry' ? row.retry_count : row.retry_count + 1;
  return {
    id: row.id,
    queue: row.name,
    state: stateNames[row.state] ?? 'waiting',
    data: row.data,
    attempts,
    createdAt: row.created_on,
    finishedAt: row.completed_on,
    error: row.error,
  };
}

const stateOfName: Record<JobState, string> = {
  waiting: 'created',
  retrying: 'retry',
  running: 'active',
  completed: 'completed',
  failed: 'failed',
  cancelled: 'cancelled',
};

export interface ListedJob {
  id: string;
  queue: string;
  state: JobState;
  data: unknown;
  attempts: number;
  createdAt: Date;
  startAfter: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  /** The error of its last failed attempt (failed and retrying jobs). */
  error: string | null;
}

/** Where a page of jobs ends: the (created_on, id) of its last job, as the database printed them. */
export interface JobPosition {
  createdAt: string;
  id: string;
}

/**
 * One queue's jobs in one state, newest first, after `after` (the position of the last job of an
 * earlier page). Jobs pg-boss has archived (finished more than its archive delay ago) are not
 * listed. Served by the index job_by_state (migration 0042): (name, state, created_on, id).
 */
export async function listJobs(
  db: Queryable,
  options: { queue: string; state: JobState; limit: number; after?: JobPosition },
): Promise<(ListedJob & { position: JobPosition })[]> {
  const after =
    options.after && uuidPattern.test(options.after.id) && !Number.isNaN(Date.parse(options.after.createdAt))
      ? options.after
      : null;
  const rows = await db.query<{
    id: string;
    name: string;
    state: string;
    data: unknown;
    retry_count: number;
    created_on: Date;
    created_on_text: string;
    start_after: Date;
    started_on: Date | null;
    completed_on: Date | null;
    error: string | null;
  }>(
    `SELECT id, name, state::text AS state, data, retry_count, created_on, created_on::text AS created_on_text, start_after, started_on, completed_on,
            CASE WHEN state IN ('failed', 'retry') THEN COALESCE(output->>'message', output->'value'->>'message', output::text) END AS error
       FROM ${schema}.job
      WHERE name = $1 AND state = $2::${schema}.job_state
        AND ($4::timestamptz IS NULL OR (created_on, id) < ($4::timestamptz, $5::uuid))
      ORDER BY created_on DESC, id DESC
      LIMIT $3`,
    [options.queue, stateOfName[options.state], options.limit, after?.createdAt ?? null, after?.id ?? null],
  );
  return rows.map((r) => ({
    id: r.id,
    queue: r.name,
    state: stateNames[r.state] ?? 'waiting',
    data: r.data,
    attempts: r.state === 'created' || r.state === 'retry' ? r.retry_count : r.retry_count + 1,
    createdAt: r.created_on,
    startAfter: r.start_after,
    startedAt: r.started_on,
    finishedAt: r.completed_on,
    error: r.error,
    position: { createdAt: r.created_on_text, id: r.id },
  }));
}

/**
 * When the next attempt of a job of `queue` whose data contains `data` is due (waiting or
 * retrying), or null when none waits. Reads only the queue's waiting jobs (pg-boss's own partial
 * index, state < 'active').
 */
export async function nextStartOf(db: Queryable, queue: string, data: object): Promise<Date | null> {
  const [row] = await db.query<{ start_after: Date | null }>(
    `SELECT min(start_after) AS start_after FROM ${schema}.job WHERE name = $1 AND state < 'active' AND data @> $2::jsonb`,
    [queue, JSON.stringify(data)],
  );
  return row?.start_after ?? null;
}
