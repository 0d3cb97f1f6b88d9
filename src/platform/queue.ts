// The durable job queue: pg-boss 10 on our own database (PostgreSQL or PGlite), with jobs inserted
// in the caller's transaction (the outbox): a business change that rolls back never enqueues, one
// that commits always does. This file knows no domain; modules declare their queues, enqueue in
// their transactions, and register handlers.
//
// Delivery is at least once. A job can run twice: its worker died after the effect but before
// marking it done, its lease ran out while it was still running, or an operator retried it. So
// EVERY HANDLER MUST BE IDEMPOTENT: running it twice has the effect of running it once (check the
// state the job is meant to change, in the same transaction as the change; pass a key that is
// stable for the job to any outside service).
//
// What pg-boss does, and how it is set up here:
// - Schema: built by migration 0004 (generated from pg-boss, see scripts/generate-queue-migration.js);
//   pg-boss starts with migrate: false and only checks its version row, so start is a few queries.
// - Retries: retryLimit attempts after the first, with pg-boss's exponential backoff, which jitters:
//   the n-th retry (n from 1) waits uniformly between retryDelay * 2^(n-1) and retryDelay * 2^n
//   seconds (exponent capped at 16; retryDelay at least 1 s when backing off).
// - Lease: a fetched job is 'active' for at most leaseSeconds (pg-boss's expireInSeconds). A worker
//   here gives up on its handler at that point and fails the attempt; when the worker's process
//   died instead, pg-boss maintenance (every maintenanceIntervalSeconds, in whichever process gets
//   there first) fails the attempt, which then goes through the same retry/backoff path.
// - Dead letter: each queue `x` has a queue `x.dead-letter`. When the last attempt fails, pg-boss
//   marks the job 'failed' and copies its data and error into the dead-letter queue as a new job
//   that nobody works: listFailedJobs shows those, retryJob sends one back to `x`.
// - Cron: pg-boss's timekeeper, in every process started with runSchedules. One process per
//   interval evaluates the schedules, and the job it sends is deduplicated per schedule and minute,
//   so several worker processes still give one run per tick.
//
// On PGlite everything goes through its one connection. pg-boss's own transactions (maintenance)
// run through db.transaction, which holds PGlite's exclusive lock; enqueue runs on the caller's Tx
// and never through db, so it cannot wait on the transaction it is part of.
import PgBoss from 'pg-boss';
import { createHash } from 'node:crypto';
import type { Db, Queryable, Tx } from './db.ts';
import { inJobSpan, withJobTrace } from './tracing.ts';

const schema = 'pgboss';

// ---------------------------------------------------------------------------------------------
// pg-boss's executeSql over our connections

// pg-boss runs its maintenance as one text "BEGIN; SET LOCAL ...; <advisory lock>; ...; COMMIT;".
// Sent as one string, a failure would leave a pooled connection inside an aborted transaction, and
// PGlite's query() takes one statement; so the body runs in one of our transactions instead.
const transactionScript = /^\s*BEGIN;([\s\S]*)COMMIT;\s*$/;

function executorOver(db: Db): PgBoss.Db {
  return {
    async executeSql(text: string, values?: unknown[]) {
      const script = values === undefined ? transactionScript.exec(text) : null;
      if (script) {
        await db.transaction((tx) => tx.exec(script[1]!));
        return { rows: [] };
      }
      return { rows: (await db.query(text, values ?? [])) ?? [] };
    },
  };
}

function executorIn(tx: Tx): PgBoss.Db {
  return { executeSql: async (text: string, values?: unknown[]) => ({ rows: (await tx.query(text, values ?? [])) ?? [] }) };
}

const bossDefaults = { schema, migrate: false, supervise: false, schedule: false } as const;

// A pg-boss instance that is never started: it only builds and runs its SQL on the db given, so
// processes that only enqueue or declare queues need no worker machinery.
function idleBoss(db: PgBoss.Db): PgBoss {
  const boss = new PgBoss({ ...bossDefaults, db });
  boss.on('error', () => {}); // it runs no workers, so it emits nothing; a listener keeps emit from throwing anyway
  return boss;
}

let sender: PgBoss | undefined;
function senderBoss(): PgBoss {
  // enqueue passes the caller's transaction on every send, so this instance's own db is never used.
  sender ??= idleBoss({ executeSql: () => Promise.reject(new Error('the queue sender has no database of its own')) });
  return sender;
}

// ---------------------------------------------------------------------------------------------
// Declaring queues

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

interface QueueRow { name: string; retry_limit: number; retry_delay: number; retry_backoff: boolean; expire_seconds: number; retention_minutes: number | null; dead_letter: string | null }

function isDeclared(spec: QueueSpec, existing: Map<string, QueueRow>): boolean {
  const row = existing.get(spec.name);
  const deadLetter = deadLetterQueueOf(spec.name);
  return row !== undefined && existing.has(deadLetter) && row.dead_letter === deadLetter && row.retry_backoff === true
    && row.retry_limit === spec.retryLimit && row.retry_delay === spec.retryDelaySeconds && row.expire_seconds === spec.leaseSeconds
    && (spec.retentionDays === undefined || row.retention_minutes === spec.retentionDays * 24 * 60);
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
  const rows = await db.query<QueueRow>(`SELECT name, retry_limit, retry_delay, retry_backoff, expire_seconds, retention_minutes, dead_letter FROM ${schema}.queue`);
  const existing = new Map(rows.map((r) => [r.name, r]));
  for (const spec of specs) {
    if (!/^[a-z0-9][a-z0-9_.-]*$/.test(spec.name) || spec.name.endsWith('.dead-letter')) {
      throw new Error(`queue name "${spec.name}" must be lower-case letters, digits, '_', '.', '-' (and not end in .dead-letter)`);
    }
    if (!Number.isInteger(spec.retryDelaySeconds) || spec.retryDelaySeconds < 1) throw new Error(`queue ${spec.name}: retryDelaySeconds must be a whole number >= 1`);
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

// ---------------------------------------------------------------------------------------------
// Enqueueing (the outbox)

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
export async function enqueue(tx: Tx, name: string, data: object, options: EnqueueOptions = {}): Promise<string | null> {
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
  const [queue] = await tx.query(`SELECT 1 FROM ${schema}.queue WHERE name = $1`, [name]);
  if (!queue) throw new Error(`queue "${name}" is not declared (declareQueues at start)`);
  return null;
}

/**
 * A retry budget of one job other than its queue's (the sandbox's drill card uses a short one, so
 * that a drill's charges run out of attempts in seconds rather than half an hour).
 */
export interface RetryBudget { retryLimit?: number; retryDelaySeconds?: number }

/** Queues seen declared by this process: enqueueMany checks each name once. */
const declaredQueues = new Set<string>();

/**
 * Inserts one job per item into queue `name`, in one statement in the caller's transaction (as
 * enqueue does for one; dedupeKey as there; traceparent: the trace each job belongs to, when not the
 * current one, see tracing.ts). pg-boss's batch insert answers nothing, and skips
 * jobs of a queue that does not exist, so the queue is checked (once per process and name).
 */
export async function enqueueMany(tx: Tx, name: string, jobs: readonly ({ data: object; dedupeKey?: string; traceparent?: string } & RetryBudget)[]): Promise<void> {
  if (jobs.length === 0) return;
  if (!declaredQueues.has(name)) {
    const [queue] = await tx.query(`SELECT 1 FROM ${schema}.queue WHERE name = $1`, [name]);
    if (!queue) throw new Error(`queue "${name}" is not declared (declareQueues at start)`);
    declaredQueues.add(name);
  }
  await senderBoss().insert(jobs.map((j) => ({
    name, data: withJobTrace(j.data, j.traceparent),
    ...(j.dedupeKey !== undefined ? { id: dedupeId(name, j.dedupeKey) } : {}),
    ...(j.retryLimit !== undefined ? { retryLimit: j.retryLimit } : {}),
    ...(j.retryDelaySeconds !== undefined ? { retryDelay: j.retryDelaySeconds } : {}),
  })), { db: executorIn(tx) });
}

// ---------------------------------------------------------------------------------------------
// Workers

export interface QueueOptions {
  /** How often an idle worker looks for jobs, in seconds (default 1). wake() skips the wait. */
  pollingIntervalSeconds?: number;
  /**
   * Run pg-boss maintenance from this process (default true): fail the attempts of jobs whose lease
   * ran out (so they are retried), archive and delete old jobs. Across processes it runs once per
   * maintenanceIntervalSeconds (default 30), which bounds how long after its lease a job whose
   * worker died waits to be retried.
   */
  maintain?: boolean;
  maintenanceIntervalSeconds?: number;
  /** Fire cron schedules from this process (default true); checked every scheduleIntervalSeconds (default 30, at most 45). */
  runSchedules?: boolean;
  scheduleIntervalSeconds?: number;
  /** Longest stop() waits for running jobs before failing them so that they are retried (default 10 s). */
  stopTimeoutSeconds?: number;
  /** Errors that are not a job's own failure (a lost database connection, pg-boss's timers). */
  onError?: (err: Error) => void;
  /** Told of each job this process finishes: completed, failed (to be retried), or dead-lettered (out of attempts). */
  onOutcome?: (queue: string, outcome: JobOutcome) => void;
  /**
   * How long finished jobs stay in pg-boss's archive (default 7 days); they move there 12 h after
   * they finish. pg-boss's maintenance deletes them, each run what aged past this since the last.
   */
  finishedJobRetentionDays?: number;
}

export type JobOutcome = 'completed' | 'failed' | 'dead_lettered';

export interface Job<T> {
  id: string;
  name: string;
  data: T;
  /** 1 on the first attempt. */
  attempt: number;
  /** Aborted when the lease runs out or the queue stops; pass it to outgoing requests. */
  signal: AbortSignal;
}

/** Must be idempotent (see the top of this file). Throwing fails the attempt; it is retried or dead-lettered. */
export type Handler<T> = (job: Job<T>) => Promise<void>;

export interface WorkOptions {
  /** Jobs of this queue handled at once by this process (default 1). */
  concurrency?: number;
}

export interface Queue {
  /** The started pg-boss, for what this file does not wrap (queue sizes, tests). */
  readonly boss: PgBoss;
  /** Skips the polling wait of this process's workers for queue `name` (or all): call after committing an enqueue. */
  wake(name?: string): void;
  /** Jobs this process is running now, by queue. */
  runningJobs(): Record<string, number>;
  /**
   * Stops fetching, lets running jobs finish for up to stopTimeoutSeconds, then fails those still
   * running (they are retried at once rather than after their lease) and stops pg-boss. Does not
   * close the database.
   */
  stop(): Promise<void>;
}

interface Running { name: string; id: string; controller: AbortController; abandoned: boolean; done: Promise<void> }

interface QueueState {
  boss: PgBoss;
  pollingMs: number;
  stopping: boolean;
  loops: Set<Promise<void>>;
  running: Set<Running>;
  sleepers: Set<{ name: string; wake: () => void }>;
  /** Settles when stop() begins, so that a loop waiting for a free slot stops waiting. */
  stopRequested: Promise<void>;
  /** Run by stop() once the jobs are done, before pg-boss stops (see onStop). */
  beforeStop: (() => Promise<void>)[];
  onError: (err: Error) => void;
  onOutcome: (queue: string, outcome: JobOutcome) => void;
}

const states = new WeakMap<Queue, QueueState>();

/** Starts pg-boss over db without building its schema (migration 0004 did) and answers the queue. */
export async function startQueue(db: Db, options: QueueOptions = {}): Promise<Queue> {
  const onError = options.onError ?? (() => {});
  const scheduleInterval = options.scheduleIntervalSeconds ?? 30;
  const boss = new PgBoss({
    ...bossDefaults,
    db: executorOver(db),
    supervise: options.maintain ?? true,
    maintenanceIntervalSeconds: options.maintenanceIntervalSeconds ?? 30,
    schedule: options.runSchedules ?? true,
    cronMonitorIntervalSeconds: scheduleInterval,
    cronWorkerIntervalSeconds: Math.min(scheduleInterval, 5),
    deleteAfterDays: options.finishedJobRetentionDays ?? 7,
  });
  boss.on('error', (err: Error) => onError(err));
  try {
    await boss.start();
  } catch (err) {
    if (/not installed|requires migrations/.test((err as Error).message)) {
      throw new Error(`the job queue's tables are missing or from another pg-boss version (${(err as Error).message}): apply the migrations`, { cause: err });
    }
    throw err;
  }

  let requestStop!: () => void;
  const state: QueueState = {
    boss, onError,
    onOutcome: options.onOutcome ?? (() => {}),
    stopRequested: new Promise((resolve) => { requestStop = resolve; }),
    pollingMs: Math.max(50, (options.pollingIntervalSeconds ?? 1) * 1000),
    beforeStop: [],
    stopping: false,
    loops: new Set(),
    running: new Set(),
    sleepers: new Set(),
  };
  const stopTimeoutMs = (options.stopTimeoutSeconds ?? 10) * 1000;
  let stopped: Promise<void> | undefined;
  const queue: Queue = {
    boss,
    wake(name) {
      for (const s of state.sleepers) if (name === undefined || s.name === name) s.wake();
    },
    runningJobs() {
      const counts: Record<string, number> = {};
      for (const r of state.running) counts[r.name] = (counts[r.name] ?? 0) + 1;
      return counts;
    },
    stop() {
      stopped ??= (async () => {
        state.stopping = true;
        requestStop();
        queue.wake();
        await Promise.allSettled([...state.loops]);
        const running = [...state.running];
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          Promise.allSettled(running.map((r) => r.done)),
          new Promise((resolve) => { timer = setTimeout(resolve, stopTimeoutMs); }),
        ]);
        clearTimeout(timer);
        for (const r of [...state.running]) {
          r.abandoned = true;
          r.controller.abort(new Error('the queue stopped before the job finished'));
          await boss.fail(r.name, r.id, { message: 'the worker stopped before the job finished' }).catch(onError);
        }
        for (const fn of state.beforeStop) await fn().catch(onError);
        await boss.stop({ graceful: true, close: false, wait: true, timeout: 1000 });
      })();
      return stopped;
    },
  };
  states.set(queue, state);
  return queue;
}

const deadRowsWorthAVacuum = 1_000;

/**
 * VACUUMs the job tables with at least minDeadRows dead rows; answers the tables vacuumed. A job
 * row is written three times (created, active, completed), and each dead version stays in the
 * fetch index until VACUUM: under load the fetch of the next job read tens of thousands of dead
 * entries while autovacuum, at most once a minute, had not come by (platform/upkeep.ts runs this).
 * SKIP_LOCKED: a table another process is vacuuming is left to it.
 */
export async function vacuumJobTables(db: Db, minDeadRows = deadRowsWorthAVacuum): Promise<string[]> {
  const tables = await db.query<{ name: string }>(
    'SELECT relid::regclass::text AS name FROM pg_stat_user_tables WHERE schemaname = $1 AND n_dead_tup >= $2 ORDER BY n_dead_tup DESC',
    [schema, minDeadRows],
  );
  // The names come from the catalog, quoted by regclass.
  for (const t of tables) await db.exec(`VACUUM (SKIP_LOCKED) ${t.name}`);
  return tables.map((t) => t.name);
}


/**
 * Runs fn when the queue stops, after its jobs and loops have finished and before it lets go of the
 * database: for what runs alongside the workers and has a last word to write (their metrics).
 */
export function onStop(queue: Queue, fn: () => Promise<void>): void {
  const state = states.get(queue);
  if (!state) throw new Error('onStop() needs a queue from startQueue()');
  state.beforeStop.push(fn);
}

/** Registers handler for the jobs of queue `name` in this process. The queue must be declared. */
export function work<T = unknown>(queue: Queue, name: string, handler: Handler<T>, options: WorkOptions = {}): void {
  const state = states.get(queue);
  if (!state) throw new Error('work() needs a queue from startQueue()');
  if (state.stopping) throw new Error('the queue is stopping');
  const concurrency = Math.max(1, options.concurrency ?? 1);
  const loop = workLoop(state, name, handler as Handler<unknown>, concurrency).catch((err: Error) => state.onError(err));
  state.loops.add(loop);
  void loop.finally(() => state.loops.delete(loop));
}

// One loop per registration keeps up to `concurrency` jobs running: it fetches as many as there are
// free slots, starts them, fetches again at once while it finds jobs, and waits when the queue is
// empty. (pg-boss's own work() waits a whole polling interval after every batch and completes or
// fails a batch as a whole, so it is not used.)
function workLoop(state: QueueState, name: string, handler: Handler<unknown>, concurrency: number): Promise<void> {
  return fetchLoop(state, name, concurrency, (running) => concurrency - running, (jobs) => jobs.map((job) => runJob(state, name, handler, job)));
}

/**
 * The loop under work() and workInBatches(): while fewer than `slots` tasks run, fetch up to
 * fetchSize(running) jobs and start them as tasks (start answers one promise per task); when the
 * queue is empty, sleep until the next poll or a wake().
 */
async function fetchLoop(state: QueueState, name: string, slots: number, fetchSize: (running: number) => number, start: (jobs: PgBoss.JobWithMetadata<unknown>[]) => Promise<void>[]): Promise<void> {
  const mine = new Set<Promise<void>>();
  while (!state.stopping) {
    if (mine.size >= slots) {
      await Promise.race([...mine, state.stopRequested]);
      continue;
    }
    let jobs: PgBoss.JobWithMetadata<unknown>[] = [];
    try {
      // pg-boss's fetch answers [] on a database error; the next poll tries again.
      jobs = await state.boss.fetch<unknown>(name, { batchSize: fetchSize(mine.size), includeMetadata: true });
    } catch (err) {
      state.onError(err as Error);
    }
    // Jobs fetched while stop() began still run: stop() waits for them like for any other.
    if (jobs.length === 0) {
      await sleep(state, name);
      continue;
    }
    for (const done of start(jobs)) {
      mine.add(done);
      void done.finally(() => mine.delete(done));
    }
  }
}

function sleep(state: QueueState, name: string, ms = state.pollingMs): Promise<void> {
  return new Promise((resolve) => {
    const sleeper = { name, wake: () => { clearTimeout(timer); state.sleepers.delete(sleeper); resolve(); } };
    const timer = setTimeout(sleeper.wake, ms);
    state.sleepers.add(sleeper);
  });
}

async function runJob(state: QueueState, name: string, handler: Handler<unknown>, job: PgBoss.JobWithMetadata<unknown>): Promise<void> {
  const controller = new AbortController();
  const leaseMs = Number(job.expireInSeconds) * 1000;
  let resolveDone!: () => void;
  const entry: Running = { name, id: job.id, controller, abandoned: false, done: new Promise((r) => { resolveDone = r; }) };
  state.running.add(entry);
  let failure: unknown;
  let ok = false;
  const lease = setTimeout(() => controller.abort(new Error(`the job ran longer than its lease of ${leaseMs / 1000}s`)), leaseMs);
  try {
    const aborted = new Promise<never>((_, reject) => controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true }));
    aborted.catch(() => {});
    await Promise.race([inJobSpan(name, [job], () => handler({ id: job.id, name, data: job.data, attempt: job.retryCount + 1, signal: controller.signal })), aborted]);
    ok = true;
  } catch (err) {
    failure = err;
  } finally {
    clearTimeout(lease);
  }
  try {
    // stop() has already failed an abandoned job; a late outcome must not touch it again.
    if (!entry.abandoned) {
      // If this fails (database gone), the job stays active and is retried once its lease runs out.
      if (ok) await state.boss.complete(name, job.id);
      else await state.boss.fail(name, job.id, errorOutput(failure));
      state.onOutcome(name, outcomeOf(ok, job));
    }
  } catch (err) {
    state.onError(err as Error);
  } finally {
    state.running.delete(entry);
    resolveDone();
  }
}

/** A failed attempt that was the job's last one sends it to the dead-letter queue. */
function outcomeOf(ok: boolean, job: PgBoss.JobWithMetadata<unknown>): JobOutcome {
  if (ok) return 'completed';
  return job.retryCount >= job.retryLimit ? 'dead_lettered' : 'failed';
}

function errorOutput(err: unknown): object {
  if (err instanceof Error) return { name: err.name, message: err.message, stack: err.stack };
  return { message: String(err) };
}

/**
 * Handles a batch of jobs of one queue; answers the error of each job whose attempt failed (by job
 * id); the others are completed. Throwing fails them all. Must be idempotent, as a Handler.
 */
export type BatchHandler<T> = (jobs: Job<T>[]) => Promise<Map<string, Error>>;

/**
 * Registers handler for the jobs of queue `name`, given to it up to batchSize at a time (whatever
 * is waiting when a batch starts; one job when the queue is quiet), with up to `concurrency`
 * batches at once. For work whose cost is mostly per batch (one transaction to record them all).
 */
export function workInBatches<T = unknown>(queue: Queue, name: string, handler: BatchHandler<T>, options: { batchSize: number; concurrency?: number }): void {
  const state = states.get(queue);
  if (!state) throw new Error('workInBatches() needs a queue from startQueue()');
  if (state.stopping) throw new Error('the queue is stopping');
  const loop = batchLoop(state, name, handler as BatchHandler<unknown>, Math.max(1, options.batchSize), Math.max(1, options.concurrency ?? 1))
    .catch((err: Error) => state.onError(err));
  state.loops.add(loop);
  void loop.finally(() => state.loops.delete(loop));
}

function batchLoop(state: QueueState, name: string, handler: BatchHandler<unknown>, batchSize: number, concurrency: number): Promise<void> {
  return fetchLoop(state, name, concurrency, () => batchSize, (jobs) => [runBatch(state, name, handler, jobs)]);
}

async function runBatch(state: QueueState, name: string, handler: BatchHandler<unknown>, jobs: PgBoss.JobWithMetadata<unknown>[]): Promise<void> {
  // One lease for the batch: the shortest of its jobs'.
  const controller = new AbortController();
  const leaseMs = Math.min(...jobs.map((job) => Number(job.expireInSeconds) * 1000));
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => { resolveDone = r; });
  const entries: Running[] = jobs.map((job) => ({ name, id: job.id, controller, abandoned: false, done }));
  for (const entry of entries) state.running.add(entry);
  let failures: Map<string, unknown>;
  const lease = setTimeout(() => controller.abort(new Error(`the batch ran longer than its lease of ${leaseMs / 1000}s`)), leaseMs);
  try {
    const aborted = new Promise<never>((_, reject) => controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true }));
    aborted.catch(() => {});
    failures = await Promise.race([
      inJobSpan(name, jobs, () => handler(jobs.map((job) => ({ id: job.id, name, data: job.data, attempt: job.retryCount + 1, signal: controller.signal })))),
      aborted,
    ]);
  } catch (err) {
    failures = new Map(jobs.map((job) => [job.id, err]));
  } finally {
    clearTimeout(lease);
  }
  try {
    // stop() has already failed abandoned jobs; a late outcome must not touch them again.
    const live = entries.filter((e) => !e.abandoned);
    const completed = live.filter((e) => !failures.has(e.id)).map((e) => e.id);
    // If this fails (database gone), the jobs stay active and are retried once their lease runs out.
    if (completed.length > 0) await state.boss.complete(name, completed);
    for (const e of live) if (failures.has(e.id)) await state.boss.fail(name, e.id, errorOutput(failures.get(e.id)));
    const byId = new Map(jobs.map((job) => [job.id, job]));
    for (const e of live) state.onOutcome(name, outcomeOf(!failures.has(e.id), byId.get(e.id)!));
  } catch (err) {
    state.onError(err as Error);
  } finally {
    for (const entry of entries) state.running.delete(entry);
    resolveDone();
  }
}

// ---------------------------------------------------------------------------------------------
// Loops that are not jobs

const longestErrorPauseMs = 30_000;

/**
 * Runs step over and over in this process until the queue stops, for work that is not a job (a
 * reader of an outbox, say): at once again while it answers true (there is more to do), otherwise
 * after the polling interval, or sooner on queue.wake(name). A step that throws is reported to
 * onError, and the loop goes on after a pause that doubles from the polling interval up to 30 s
 * while it keeps failing. stop() waits for the step in progress. Answers a promise that settles
 * when the loop has ended.
 */
export function poll(queue: Queue, name: string, step: () => Promise<boolean>): Promise<void> {
  const state = states.get(queue);
  if (!state) throw new Error('poll() needs a queue from startQueue()');
  if (state.stopping) throw new Error('the queue is stopping');
  const loop = (async () => {
    let pauseMs = state.pollingMs;
    while (!state.stopping) {
      let more: boolean;
      try {
        more = await step();
        pauseMs = state.pollingMs;
      } catch (err) {
        state.onError(err as Error);
        if (state.stopping) break;
        await sleep(state, name, pauseMs);
        pauseMs = Math.min(longestErrorPauseMs, pauseMs * 2);
        continue;
      }
      // stop() wakes sleepers once: a loop that would start sleeping after that must not.
      if (!more && !state.stopping) await sleep(state, name);
    }
  })();
  state.loops.add(loop);
  void loop.finally(() => state.loops.delete(loop));
  return loop;
}

// ---------------------------------------------------------------------------------------------
// Schedules

/**
 * Enqueues a job into queue `name` (declared) on a cron expression, evaluated in UTC; minute
 * resolution. Stored in the database (one schedule per queue; calling again replaces it), so any
 * process can set it, and the processes started with runSchedules fire it once per tick between
 * them. The job may come up to scheduleIntervalSeconds (plus a few seconds) after the tick.
 */
export async function schedule(queue: Queue, name: string, cron: string, data: object = {}): Promise<void> {
  await queue.boss.schedule(name, cron, data, { tz: 'UTC' });
}

/** Removes the schedule of queue `name` (a schedule retired by a newer release, say). */
export async function unschedule(queue: Queue, name: string): Promise<void> {
  await queue.boss.unschedule(name);
}

// ---------------------------------------------------------------------------------------------
// Operator functions

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
export interface FailedJobPosition { failedAt: string; id: string }

/**
 * The jobs that ran out of attempts and wait in a dead-letter queue, latest first, up to limit,
 * after `after` (the position of the last job of an earlier page; each job answers its own).
 */
export async function listFailedJobs(db: Queryable, options: { limit: number; queue?: string; after?: FailedJobPosition }): Promise<(FailedJob & { position: FailedJobPosition })[]> {
  const after = options.after && uuidPattern.test(options.after.id) && !Number.isNaN(Date.parse(options.after.failedAt)) ? options.after : null;
  const rows = await db.query<{ id: string; queue: string; data: unknown; error: string | null; attempts: number; failed_at: Date; failed_at_text: string }>(
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
    id: r.id, queue: r.queue, data: r.data, error: r.error ?? '', attempts: Number(r.attempts), failedAt: r.failed_at,
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

const stateNames: Record<string, JobState> = { created: 'waiting', retry: 'retrying', active: 'running', completed: 'completed', failed: 'failed', cancelled: 'cancelled' };

/**
 * One job, live or archived (pg-boss archives finished jobs after 12 h and deletes them after 7
 * days). Give its queue when known: the job tables are keyed by (queue, id).
 */
export async function findJob(db: Queryable, id: string, queue?: string): Promise<{ id: string; queue: string; state: JobState; data: unknown; attempts: number; createdAt: Date; finishedAt: Date | null; error: string | null } | undefined> {
  if (!uuidPattern.test(id)) return undefined;
  const where = queue === undefined ? 'id = $1' : 'name = $2 AND id = $1';
  const columns = `id, name, state::text AS state, data, retry_count, created_on, completed_on,
            CASE WHEN state IN ('failed', 'retry') THEN COALESCE(output->>'message', output::text) END AS error`;
  const [row] = await db.query<{ id: string; name: string; state: string; data: unknown; retry_count: number; created_on: Date; completed_on: Date | null; error: string | null }>(
    `SELECT ${columns} FROM ${schema}.job WHERE ${where}
     UNION ALL
     SELECT ${columns} FROM ${schema}.archive WHERE ${where}
     LIMIT 1`,
    queue === undefined ? [id] : [id, queue],
  );
  if (!row) return undefined;
  // An attempt counts when it starts: a job waiting again after failures has made retry_count of them.
  const attempts = row.state === 'created' || row.state === 'retry' ? row.retry_count : row.retry_count + 1;
  return { id: row.id, queue: row.name, state: stateNames[row.state] ?? 'waiting', data: row.data, attempts, createdAt: row.created_on, finishedAt: row.completed_on, error: row.error };
}

const stateOfName: Record<JobState, string> = { waiting: 'created', retrying: 'retry', running: 'active', completed: 'completed', failed: 'failed', cancelled: 'cancelled' };

export interface ListedJob {
  id: string; queue: string; state: JobState; data: unknown;
  attempts: number; createdAt: Date; startAfter: Date; startedAt: Date | null; finishedAt: Date | null;
  /** The error of its last failed attempt (failed and retrying jobs). */
  error: string | null;
}

/** Where a page of jobs ends: the (created_on, id) of its last job, as the database printed them. */
export interface JobPosition { createdAt: string; id: string }

/**
 * One queue's jobs in one state, newest first, after `after` (the position of the last job of an
 * earlier page). Jobs pg-boss has archived (finished more than its archive delay ago) are not
 * listed. Served by the index job_by_state (migration 0042): (name, state, created_on, id).
 */
export async function listJobs(db: Queryable, options: { queue: string; state: JobState; limit: number; after?: JobPosition }): Promise<(ListedJob & { position: JobPosition })[]> {
  const after = options.after && uuidPattern.test(options.after.id) && !Number.isNaN(Date.parse(options.after.createdAt)) ? options.after : null;
  const rows = await db.query<{ id: string; name: string; state: string; data: unknown; retry_count: number; created_on: Date; created_on_text: string; start_after: Date; started_on: Date | null; completed_on: Date | null; error: string | null }>(
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
    id: r.id, queue: r.name, state: stateNames[r.state] ?? 'waiting', data: r.data,
    attempts: r.state === 'created' || r.state === 'retry' ? r.retry_count : r.retry_count + 1,
    createdAt: r.created_on, startAfter: r.start_after, startedAt: r.started_on, finishedAt: r.completed_on, error: r.error,
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

export async function queueExists(db: Queryable, name: string): Promise<boolean> {
  return (await db.query(`SELECT 1 FROM ${schema}.queue WHERE name = $1`, [name])).length > 0;
}
