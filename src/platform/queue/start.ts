// A started queue in this process: pg-boss with its maintenance and cron, the state its work
// loops share (what runs, who sleeps, whether it is stopping), and the graceful stop. The loops
// themselves are in work.ts.
import PgBoss from 'pg-boss';
import type { Db } from '../db.ts';
import { bossDefaults, executorOver } from './boss.ts';

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

export interface Running {
  name: string;
  id: string;
  controller: AbortController;
  abandoned: boolean;
  done: Promise<void>;
}

export interface QueueState {
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
      throw new Error(
        `the job queue's tables are missing or from another pg-boss version (${(err as Error).message}): apply the migrations`,
        { cause: err },
      );
    }
    throw err;
  }

  let requestStop!: () => void;
  const state: QueueState = {
    boss,
    onError,
    onOutcome: options.onOutcome ?? (() => {}),
    stopRequested: new Promise((resolve) => {
      requestStop = resolve;
    }),
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
          new Promise((resolve) => {
            timer = setTimeout(resolve, stopTimeoutMs);
          }),
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

/**
 * Runs fn when the queue stops, after its jobs and loops have finished and before it lets go of the
 * database: for what runs alongside the workers and has a last word to write (their metrics).
 */
export function onStop(queue: Queue, fn: () => Promise<void>): void {
  stateOf(queue, 'onStop()').beforeStop.push(fn);
}

/** The state of a queue from startQueue(); `what` names the caller in the error for any other. */
export function stateOf(queue: Queue, what: string): QueueState {
  const state = states.get(queue);
  if (!state) throw new Error(`${what} needs a queue from startQueue()`);
  return state;
}

/** Waits the polling interval (or ms), or until queue.wake(name) or stop() wakes the loop. */
export function sleep(state: QueueState, name: string, ms = state.pollingMs): Promise<void> {
  return new Promise((resolve) => {
    const sleeper = {
      name,
      wake: () => {
        clearTimeout(timer);
        state.sleepers.delete(sleeper);
        resolve();
      },
    };
    const timer = setTimeout(sleeper.wake, ms);
    state.sleepers.add(sleeper);
  });
}
