// The work loops of a started queue: work() runs a handler per job, workInBatches() one per
// batch, poll() a step that is not a job (an outbox reader). Each loop fetches while it has free
// slots, runs what it got under the jobs' lease, completes or fails each job, and sleeps when the
// queue is empty until the next poll or a wake().
import type PgBoss from 'pg-boss';
import { inJobSpan } from '../tracing.ts';
import { sleep, stateOf, type JobOutcome, type QueueState, type Running, type Queue } from './start.ts';

export interface Job<T> {
  id: string;
  name: string;
  data: T;
  /** 1 on the first attempt. */
  attempt: number;
  /** Aborted when the lease runs out or the queue stops; pass it to outgoing requests. */
  signal: AbortSignal;
}

/** Must be idempotent (see platform/queue.ts). Throwing fails the attempt; it is retried or dead-lettered. */
export type Handler<T> = (job: Job<T>) => Promise<void>;

export interface WorkOptions {
  /** Jobs of this queue handled at once by this process (default 1). */
  concurrency?: number;
}

/** Registers handler for the jobs of queue `name` in this process. The queue must be declared. */
export function work<T = unknown>(queue: Queue, name: string, handler: Handler<T>, options: WorkOptions = {}): void {
  const state = stateOf(queue, 'work()');
  if (state.stopping) throw new Error('the queue is stopping');
  const concurrency = Math.max(1, options.concurrency ?? 1);
  const loop = workLoop(state, name, handler as Handler<unknown>, concurrency).catch((err: Error) =>
    state.onError(err),
  );
  state.loops.add(loop);
  void loop.finally(() => state.loops.delete(loop)); // loop's failure goes to onError above
}

// One loop per registration keeps up to `concurrency` jobs running: it fetches as many as there are
// free slots, starts them, fetches again at once while it finds jobs, and waits when the queue is
// empty. (pg-boss's own work() waits a whole polling interval after every batch and completes or
// fails a batch as a whole, so it is not used.)
function workLoop(state: QueueState, name: string, handler: Handler<unknown>, concurrency: number): Promise<void> {
  return fetchLoop(
    state,
    name,
    concurrency,
    (running) => concurrency - running,
    (jobs) => jobs.map((job) => runJob(state, name, handler, job)),
  );
}

/**
 * The loop under work() and workInBatches(): while fewer than `slots` tasks run, fetch up to
 * fetchSize(running) jobs and start them as tasks (start answers one promise per task); when the
 * queue is empty, sleep until the next poll or a wake().
 */
async function fetchLoop(
  state: QueueState,
  name: string,
  slots: number,
  fetchSize: (running: number) => number,
  start: (jobs: PgBoss.JobWithMetadata<unknown>[]) => Promise<void>[],
): Promise<void> {
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
      void done.finally(() => mine.delete(done)); // a job's outcome is recorded by start(); done never rejects
    }
  }
}

async function runJob(
  state: QueueState,
  name: string,
  handler: Handler<unknown>,
  job: PgBoss.JobWithMetadata<unknown>,
): Promise<void> {
  const controller = new AbortController();
  const leaseMs = Number(job.expireInSeconds) * 1000;
  let resolveDone!: () => void;
  const entry: Running = {
    name,
    id: job.id,
    controller,
    abandoned: false,
    done: new Promise((r) => {
      resolveDone = r;
    }),
  };
  state.running.add(entry);
  let failure: unknown;
  let ok = false;
  const lease = setTimeout(
    () => controller.abort(new Error(`the job ran longer than its lease of ${leaseMs / 1000}s`)),
    leaseMs,
  );
  try {
    const aborted = new Promise<never>((_, reject) =>
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true }),
    );
    aborted.catch(() => {}); // raced below, where its rejection is handled; unraced, it must not be unhandled
    await Promise.race([
      inJobSpan(name, [job], () =>
        handler({ id: job.id, name, data: job.data, attempt: job.retryCount + 1, signal: controller.signal }),
      ),
      aborted,
    ]);
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
export function workInBatches<T = unknown>(
  queue: Queue,
  name: string,
  handler: BatchHandler<T>,
  options: { batchSize: number; concurrency?: number },
): void {
  const state = stateOf(queue, 'workInBatches()');
  if (state.stopping) throw new Error('the queue is stopping');
  const loop = batchLoop(
    state,
    name,
    handler as BatchHandler<unknown>,
    Math.max(1, options.batchSize),
    Math.max(1, options.concurrency ?? 1),
  ).catch((err: Error) => state.onError(err));
  state.loops.add(loop);
  void loop.finally(() => state.loops.delete(loop)); // loop's failure goes to onError above
}

function batchLoop(
  state: QueueState,
  name: string,
  handler: BatchHandler<unknown>,
  batchSize: number,
  concurrency: number,
): Promise<void> {
  return fetchLoop(
    state,
    name,
    concurrency,
    () => batchSize,
    (jobs) => [runBatch(state, name, handler, jobs)],
  );
}

async function runBatch(
  state: QueueState,
  name: string,
  handler: BatchHandler<unknown>,
  jobs: PgBoss.JobWithMetadata<unknown>[],
): Promise<void> {
  // One lease for the batch: the shortest of its jobs'.
  const controller = new AbortController();
  const leaseMs = Math.min(...jobs.map((job) => Number(job.expireInSeconds) * 1000));
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => {
    resolveDone = r;
  });
  const entries: Running[] = jobs.map((job) => ({ name, id: job.id, controller, abandoned: false, done }));
  for (const entry of entries) state.running.add(entry);
  let failures: Map<string, unknown>;
  const lease = setTimeout(
    () => controller.abort(new Error(`the batch ran longer than its lease of ${leaseMs / 1000}s`)),
    leaseMs,
  );
  try {
    const aborted = new Promise<never>((_, reject) =>
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true }),
    );
    aborted.catch(() => {});
    failures = await Promise.race([
      inJobSpan(name, jobs, () =>
        handler(
          jobs.map((job) => ({
            id: job.id,
            name,
            data: job.data,
            attempt: job.retryCount + 1,
            signal: controller.signal,
          })),
        ),
      ),
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
  const state = stateOf(queue, 'poll()');
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
  void loop.finally(() => state.loops.delete(loop)); // the loop hands every step's failure to onError itself
  return loop;
}
