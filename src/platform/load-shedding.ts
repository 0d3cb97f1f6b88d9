// Load shedding: when this process is saturated, a request is answered 503 unavailable with
// Retry-After at once, before any work (before authentication, which reads the database), instead
// of joining a queue it would time out in. Three signals, each with a threshold (0 turns it off):
// - event-loop delay (perf_hooks monitorEventLoopDelay): its 99th percentile over the last sample
//   (~100 ms); a JavaScript thread that far behind cannot answer anything in time;
// - work waiting for a database connection (the pg pool's waiting clients, PGlite's queue), read
//   at each request: more waiting than the threshold means a new request would wait behind them;
// - requests in flight in this process (from arrival to the start of their answer; a stream counts
//   until its headers go out). Neither signal above bounds what was admitted before it rose: on a
//   machine where the process got a fifth of a core, admitted requests waited seconds behind each
//   other while the delay signal shed most new ones (docs/PERFORMANCE.md, overload). A cap on what
//   is in flight bounds the wait by Little's law: in flight / throughput.
// The operations routes (rateLimit: false: health, readiness, metrics) are never shed: a probe
// must tell "busy" from "broken", and an operator must see the figures of an overload.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Counter } from 'prom-client';
import type { Db } from './db.ts';
import { AppError } from '../errors.ts';

const sampleMs = 100;

export interface LoadSheddingSettings { eventLoopDelayMs: number; dbWaiting: number; maxInFlight: number }

export function registerLoadShedding(app: FastifyInstance, deps: { db: Pick<Db, 'waiting'>; settings: LoadSheddingSettings; shed?: Counter<'reason'> }): void {
  const { eventLoopDelayMs, dbWaiting, maxInFlight } = deps.settings;
  let loopDelayed = false;
  if (eventLoopDelayMs > 0) {
    const histogram = monitorEventLoopDelay({ resolution: 10 });
    histogram.enable();
    const timer = setInterval(() => {
      loopDelayed = histogram.count > 0 && histogram.percentile(99) / 1e6 > eventLoopDelayMs;
      histogram.reset();
    }, sampleMs);
    timer.unref();
    // What building the app took (loading and compiling modules) is not an overload.
    app.addHook('onReady', async () => { histogram.reset(); loopDelayed = false; });
    app.addHook('onClose', async () => { clearInterval(timer); histogram.disable(); });
  }
  if (eventLoopDelayMs === 0 && dbWaiting === 0 && maxInFlight === 0) return;
  let inFlight = 0;
  // Each admitted request's way out of the count, taken once: when its answer starts, or when its
  // connection closes first.
  const releases = new WeakMap<FastifyRequest, () => void>();
  app.addHook('onRequest', async (request, reply) => {
    if (request.routeOptions.config?.rateLimit === false) return;
    let reason: 'event_loop' | 'database' | 'in_flight' | undefined;
    if (loopDelayed) reason = 'event_loop';
    else if (dbWaiting > 0 && deps.db.waiting() > dbWaiting) reason = 'database';
    else if (maxInFlight > 0 && inFlight >= maxInFlight) reason = 'in_flight';
    if (reason === undefined) {
      if (maxInFlight > 0) {
        inFlight++;
        let held = true;
        const release = () => { if (held) { held = false; inFlight--; } };
        releases.set(request, release);
        reply.raw.once('close', release);
      }
      return;
    }
    deps.shed?.inc({ reason });
    throw new AppError('unavailable', reason === 'database' ? 'The database is saturated; retry shortly' : 'This server is overloaded; retry shortly', { retryAfterSeconds: 1 });
  });
  if (maxInFlight > 0) {
    // A callback hook, not an async one (see the Server-Timing hook in http.ts: an async onSend
    // defers the send a tick, and a traced response then writes its headers twice).
    app.addHook('onSend', (request, _reply, payload, done) => {
      releases.get(request)?.();
      done(null, payload);
    });
  }
}
