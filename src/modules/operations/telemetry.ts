// Each process writes what it knows about itself into the database every few seconds, so that the
// console and /metrics/system can show the whole system (every API and worker process on one
// PostgreSQL) rather than the one process that happens to answer:
// - its row in ops_processes (host, pid, version, memory, event-loop lag, pool, running jobs),
//   which doubles as its heartbeat: a process is alive while its row is fresh;
// - the counters it kept in memory since the last flush (platform/metrics.ts: requests, errors,
//   latency, job outcomes, processor answers) as one ops_rollups row, and added to ops_totals.
// One transaction every flushIntervalMs per process, whatever the traffic: counting costs a request
// or an order nothing but a Map update. The retention job (modules/retention) prunes the rows.
import { hostname } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Db } from '../../platform/db.ts';
import type { Counters, CounterSnapshot } from '../../platform/metrics.ts';

/** How often a process flushes its counters and refreshes its heartbeat. */
export const flushIntervalMs = 5_000;
/** A process whose row is older than this is not shown as alive. */
export const aliveSeconds = 20;

// What identifies this OS process, whatever it runs (an inline `start` runs the API and the workers,
// and each writes through its own telemetry into the same row).
const startedAt = new Date();
export const thisProcess = Object.freeze({
  id: `${hostname()}:${process.pid}:${startedAt.getTime().toString(36)}`,
  host: hostname(),
  pid: process.pid,
  startedAt,
});

// One event-loop delay histogram per process; every flush reads the p99 of the interval since the last one.
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();
let loopLagMs = 0;
let loopLagReadAt = 0;
function loopLagP99Ms(): number {
  if (Date.now() - loopLagReadAt >= flushIntervalMs / 2) {
    loopLagMs = loopDelay.count > 0 ? loopDelay.percentile(99) / 1e6 : 0;
    loopDelay.reset();
    loopLagReadAt = Date.now();
  }
  return loopLagMs;
}

export interface TelemetryOptions {
  db: Db;
  version: string;
  role: 'api' | 'worker';
  counters: Counters;
  /** Jobs this process runs now, by queue (worker role). */
  runningJobs?: () => Record<string, number>;
  intervalMs?: number;
  onError?: (err: Error) => void;
}

export interface Telemetry {
  /** Writes now (tests; the timer does it every interval). */
  flush(): Promise<void>;
  /** Stops the timer, writes what is left, and takes this role off the process's row. */
  stop(): Promise<void>;
}

export async function writeTelemetry(
  db: Db,
  options: TelemetryOptions,
  snapshot: CounterSnapshot | null,
): Promise<void> {
  const pool = db.poolStats?.();
  const memory = process.memoryUsage();
  const api = options.role === 'api';
  await db.transaction(async (tx) => {
    await tx.query(
      `INSERT INTO ops_processes (id, host, pid, version, serves_http, runs_workers, started_at, seen_at,
                                  rss_bytes, heap_used_bytes, loop_lag_p99_ms, pool_size, pool_in_use, pool_waiting, running_jobs)
       VALUES ($1, $2, $3, $4, $5, $6, $7, now(), $8, $9, $10, $11, $12, $13, $14)
       ON CONFLICT (id) DO UPDATE SET
         version = excluded.version, seen_at = now(),
         serves_http = ops_processes.serves_http OR excluded.serves_http,
         runs_workers = ops_processes.runs_workers OR excluded.runs_workers,
         rss_bytes = excluded.rss_bytes, heap_used_bytes = excluded.heap_used_bytes, loop_lag_p99_ms = excluded.loop_lag_p99_ms,
         pool_size = excluded.pool_size, pool_in_use = excluded.pool_in_use, pool_waiting = excluded.pool_waiting,
         running_jobs = CASE WHEN excluded.runs_workers THEN excluded.running_jobs ELSE ops_processes.running_jobs END`,
      [
        thisProcess.id,
        thisProcess.host,
        thisProcess.pid,
        options.version,
        api,
        !api,
        thisProcess.startedAt,
        memory.rss,
        memory.heapUsed,
        loopLagP99Ms(),
        pool?.size ?? null,
        pool?.inUse ?? null,
        pool?.waiting ?? null,
        JSON.stringify(options.runningJobs?.() ?? {}),
      ],
    );
    if (!snapshot) return;
    await tx.query('INSERT INTO ops_rollups (at, process_id, counters, latency) VALUES (now(), $1, $2, $3)', [
      thisProcess.id,
      JSON.stringify(snapshot.counters),
      snapshot.latency,
    ]);
    // Running totals for Prometheus counters (requests are this process's own, on its /metrics).
    // In key order, so that processes flushing at once lock the rows in one order.
    await tx.query(
      `INSERT INTO ops_totals (metric, label, count, sum)
       SELECT split_part(key, E'\\t', 1), substr(key, strpos(key, E'\\t') + 1), (value->>0)::bigint, (value->>1)::bigint
         FROM jsonb_each($1::jsonb) WHERE key NOT LIKE 'http.%' ORDER BY key
       ON CONFLICT (metric, label) DO UPDATE SET count = ops_totals.count + excluded.count, sum = ops_totals.sum + excluded.sum`,
      [JSON.stringify(snapshot.counters)],
    );
  });
}

export function startTelemetry(options: TelemetryOptions): Telemetry {
  const { db, counters } = options;
  const intervalMs = options.intervalMs ?? flushIntervalMs;
  const onError = options.onError ?? (() => {});
  let running: Promise<void> = Promise.resolve();
  let stopped = false;

  const flush = () => {
    running = running
      .then(async () => {
        const snapshot = counters.drain();
        try {
          await writeTelemetry(db, options, snapshot);
        } catch (err) {
          // The database is away: keep the counts for the next flush.
          if (snapshot) counters.restore(snapshot);
          throw err;
        }
      })
      .catch((err: Error) => onError(err));
    return running;
  };

  let timer: NodeJS.Timeout | undefined;
  const schedule = () => {
    timer = setTimeout(() => {
      void flush().then(() => {
        if (!stopped) schedule();
      });
    }, intervalMs);
    timer.unref();
  };
  // flush reports its own failure (onError) and never rejects.
  void flush().then(() => {
    if (!stopped) schedule();
  });

  return {
    flush,
    async stop() {
      if (stopped) return running;
      stopped = true;
      clearTimeout(timer);
      await flush();
      try {
        await db.transaction(async (tx) => {
          const api = options.role === 'api';
          await tx.query(
            'UPDATE ops_processes SET serves_http = serves_http AND NOT $2, runs_workers = runs_workers AND $2 WHERE id = $1',
            [thisProcess.id, api],
          );
          await tx.query('DELETE FROM ops_processes WHERE id = $1 AND NOT serves_http AND NOT runs_workers', [
            thisProcess.id,
          ]);
        });
      } catch (err) {
        onError(err as Error);
      }
    },
  };
}
