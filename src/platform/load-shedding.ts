// Load shedding: when this process is saturated, a request is answered 503 unavailable with
// Retry-After at once, before any work (before authentication, which reads the database), instead
// of joining a queue it would time out in. Two signals, each with a threshold (0 turns it off):
// - event-loop delay (perf_hooks monitorEventLoopDelay): its 99th percentile over the last sample
//   (~100 ms); a JavaScript thread that far behind cannot answer anything in time;
// - work waiting for a database connection (the pg pool's waiting clients, PGlite's queue), read
//   at each request: more waiting than the threshold means a new request would wait behind them.
// The operations routes (rateLimit: false: health, readiness, metrics) are never shed: a probe
// must tell "busy" from "broken", and an operator must see the figures of an overload.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { FastifyInstance } from 'fastify';
import type { Counter } from 'prom-client';
import type { Db } from './db.ts';
import { AppError } from '../errors.ts';

const sampleMs = 100;

export interface LoadSheddingSettings { eventLoopDelayMs: number; dbWaiting: number }

export function registerLoadShedding(app: FastifyInstance, deps: { db: Pick<Db, 'waiting'>; settings: LoadSheddingSettings; shed?: Counter<'reason'> }): void {
  const { eventLoopDelayMs, dbWaiting } = deps.settings;
  let loopDelayed = false;
  if (eventLoopDelayMs > 0) {
    const histogram = monitorEventLoopDelay({ resolution: 10 });
    histogram.enable();
    const timer = setInterval(() => {
      loopDelayed = histogram.count > 0 && histogram.percentile(99) / 1e6 > eventLoopDelayMs;
      histogram.reset();
    }, sampleMs);
    timer.unref();
    app.addHook('onClose', async () => { clearInterval(timer); histogram.disable(); });
  }
  if (eventLoopDelayMs === 0 && dbWaiting === 0) return;
  app.addHook('onRequest', async (request) => {
    if (request.routeOptions.config?.rateLimit === false) return;
    let reason: 'event_loop' | 'database' | undefined;
    if (loopDelayed) reason = 'event_loop';
    else if (dbWaiting > 0 && deps.db.waiting() > dbWaiting) reason = 'database';
    if (reason === undefined) return;
    deps.shed?.inc({ reason });
    throw new AppError('unavailable', reason === 'event_loop' ? 'This server is overloaded; retry shortly' : 'The database is saturated; retry shortly', { retryAfterSeconds: 1 });
  });
}
