// Load shedding: a request waits for its turn by priority, and is answered 503 unavailable with
// Retry-After when its wait would be (or has become) too long, by time, never by how many arrive
// together (src/platform/admission.ts decides; this file puts it in front of the routes).
// - When: on arrival (onRequest), before authentication reads the database, so that the queue
//   here is in front of every database read a request makes. A request whose body is not all in
//   once it is authenticated (preParsing) gives its turn back and takes a new one once the body is
//   in (preValidation): a client that trickles a body holds nothing another client needs while it
//   does, neither a place in the limit nor in the queue. A request leaves when its answer starts
//   (a stream: its headers) or its connection closes.
// - Who first: routePriorities below, the one table of priority classes.
// - The event loop's delay (its p99 over 100 ms) past SHED_EVENT_LOOP_DELAY_MS refuses the normal
//   and low classes at once: every request waits that long before any hook runs, which no queue
//   here measures. The critical class still queues (its wait refuses it if the delay persists).
// - One client address may have at most SHED_SLOW_UPLOADS_PER_CLIENT bodies arriving for longer
//   than a second; past that its next request with a body is answered 429 and its connection
//   closed, before anything is read: a trickling client cannot hold every socket of the process.
// Health and readiness (rateLimit: false, not in the table) are never shed: a probe must tell
// "busy" from "broken".
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Counter } from 'prom-client';
import { AppError } from '../errors.ts';
import { createAdmission, type Entry, type Priority, type ShedReason } from './admission.ts';
import type { Counters } from './metrics.ts';
import { carriesBody } from './http.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Set from routePriorities when the route is added: the class its requests queue in, or exempt. */
    priority?: Priority | 'exempt';
  }
}

/**
 * The priority classes, as data: "METHOD /pattern" (a trailing * matches a prefix). Placing an
 * order (its payment with it), signing in and signing up go before everything else; lists, the
 * console's reads, metrics and new event streams give way first. Every other route is normal.
 */
export const routePriorities: Readonly<Record<string, Priority>> = {
  'POST /v1/orders': 'critical',
  'POST /v1/auth/login': 'critical',
  'POST /v1/auth/signup': 'critical',
  'GET /v1/products': 'low',
  'GET /v1/orders': 'low',
  'GET /v1/inventory': 'low',
  'GET /v1/inventory/:sku/movements': 'low',
  'GET /v1/conversations': 'low',
  'GET /v1/users': 'low',
  'GET /v1/users/:id/sessions': 'low',
  'GET /v1/webhook-endpoints': 'low',
  'GET /v1/webhook-endpoints/:id/deliveries': 'low',
  'GET /v1/api-keys': 'low',
  'GET /v1/ledger/balances': 'low',
  'GET /v1/sandbox/charges': 'low',
  'GET /v1/admin/*': 'low',
  'GET /v1/events': 'low',
  'GET /metrics': 'low',
  'GET /metrics/system': 'low',
};

/** Routes that answer with a stream they write themselves (reply.raw.writeHead): their headers end their turn. */
const streamRoutes = new Set(['/v1/events']);

/** The class of a route: the table's, else normal; routes never rate limited and not in the table (probes) are exempt. */
export function priorityOf(method: string, url: string, rateLimited: boolean): Priority | 'exempt' {
  const m = method === 'HEAD' ? 'GET' : method;
  const exact = routePriorities[`${m} ${url}`];
  if (exact) return exact;
  for (const [key, p] of Object.entries(routePriorities)) {
    if (key.endsWith('*') && `${m} ${url}`.startsWith(key.slice(0, -1))) return p;
  }
  return rateLimited ? 'normal' : 'exempt';
}

export interface LoadSheddingSettings {
  /** The critical class's wait target, ms (normal: half, low: a quarter); 0: no admission queue. */
  targetWaitMs: number;
  /** Refuse the normal and low classes while the event loop's delay is above this (ms); 0: off. */
  eventLoopDelayMs: number;
  /** Safety cap on requests admitted at once (the queue's is 5 times it). */
  maxInFlight: number;
  /** Bodies one client address may have arriving for more than a second; 0: no cap. */
  slowUploadsPerClient: number;
}

const sampleMs = 100;
const tickMs = 20;
const slowAfterMs = 1000;
/** Requests refused past the slow-upload cap: on the rate-limit counter, under this policy. */
const slowUploadPolicy = 'slow_uploads';

export function registerLoadShedding(
  app: FastifyInstance,
  deps: {
    settings: LoadSheddingSettings;
    shed?: Counter<'reason' | 'priority'>;
    rateLimited?: Counter<'policy'>;
    counters?: Counters;
    now?: () => number;
  },
): void {
  const { targetWaitMs, eventLoopDelayMs, maxInFlight, slowUploadsPerClient } = deps.settings;
  const now = deps.now ?? (() => performance.now());

  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    route.config = {
      ...route.config,
      priority: priorityOf(String(methods[0]), route.url, route.config?.rateLimit !== false),
    };
  });

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
    app.addHook('onReady', async () => {
      histogram.reset();
      loopDelayed = false;
    });
    app.addHook('onClose', async () => {
      clearInterval(timer);
      histogram.disable();
    });
  }
  const admission =
    targetWaitMs > 0
      ? createAdmission({
          now,
          targetWaitMs,
          maxInFlight,
          maxQueued: maxInFlight * 5,
          initialLimit: Math.min(64, maxInFlight),
        })
      : undefined;
  if (admission) {
    const timer = setInterval(() => admission.tick(), tickMs);
    timer.unref();
    app.addHook('onClose', async () => clearInterval(timer));
  }
  if (!admission && eventLoopDelayMs === 0 && slowUploadsPerClient === 0) return;

  // The connection stays open (Node reads and drops a body not read yet): closing it would cost the
  // client a new connection, and the server an accept, for each refusal, when they matter most.
  function shed(priority: Priority, reason: ShedReason): never {
    deps.shed?.inc({ reason, priority });
    deps.counters?.add('http.shed', `${reason}\t${priority}`);
    throw new AppError(
      'unavailable',
      reason === 'event_loop'
        ? 'This server is overloaded; retry shortly'
        : 'This server has more work queued than it can answer in time; retry shortly',
      { retryAfterSeconds: 1 },
    );
  }

  // Bodies arriving, per client address, oldest first (a Set keeps insertion order).
  const arriving = new Map<string, Map<FastifyRequest, number>>();
  const stopArriving = (request: FastifyRequest) => {
    const mine = arriving.get(request.ip);
    if (mine?.delete(request) && mine.size === 0) arriving.delete(request.ip);
  };
  function slowUploadsOf(ip: string, at: number): number {
    let n = 0;
    for (const startedAt of arriving.get(ip)?.values() ?? []) {
      if (at - startedAt < slowAfterMs) break;
      n++;
    }
    return n;
  }

  /** Admits the request (or queues it until it is admitted); throws 503 if it is refused. */
  async function admit(request: FastifyRequest, reply: FastifyReply, priority: Priority): Promise<void> {
    const entry = admission!.enter(priority);
    if (entry.state === 'queued') {
      const onClose = () => admission!.leave(entry);
      reply.raw.once('close', onClose);
      await new Promise<void>((resolve) => {
        entry.notify = () => resolve();
        reply.raw.once('close', () => resolve());
      });
      reply.raw.off('close', onClose);
      if ((entry.state as Entry['state']) === 'left')
        throw new AppError('unavailable', 'The client left while its request waited');
    }
    if (entry.state === 'refused') shed(priority, entry.reason!);
    const release = () => admission!.leave(entry);
    held.set(request, release);
    reply.raw.once('close', release);
    // A stream answers with reply.raw.writeHead (no onSend): its headers end its turn.
    if (streamRoutes.has(request.routeOptions.url ?? '')) {
      const raw = reply.raw;
      const writeHead = raw.writeHead;
      raw.writeHead = function (this: typeof raw, ...args: Parameters<typeof raw.writeHead>) {
        release();
        return writeHead.apply(this, args);
      } as typeof raw.writeHead;
    }
  }
  /** Each admitted request's way out, taken once: when its answer starts, or its connection closes first. */
  const held = new WeakMap<FastifyRequest, () => void>();
  /** Requests that gave their turn back while their body arrives: they take a new one once it is in. */
  const awaitingBody = new WeakSet<FastifyRequest>();

  app.addHook('onRequest', async (request, reply) => {
    if (request.is404) return;
    const priority = request.routeOptions.config.priority;
    if (priority === undefined || priority === 'exempt') return;
    const withBody = carriesBody(request);
    if (loopDelayed && priority !== 'critical') shed(priority, 'event_loop');
    if (withBody && slowUploadsPerClient > 0 && slowUploadsOf(request.ip, now()) >= slowUploadsPerClient) {
      deps.rateLimited?.inc({ policy: slowUploadPolicy });
      reply.header('connection', 'close');
      throw new AppError(
        'rate_limited',
        `More than ${slowUploadsPerClient} request bodies from this address are arriving slowly; send the next once one is in`,
        { retryAfterSeconds: 1 },
      );
    }
    // The turn covers authentication (a database read) and the rate limit, which run next.
    if (admission) await admit(request, reply, priority);
  });

  // After authentication, before the body is read: a body not in yet gives the turn back, so that
  // a slow sender holds nothing while it trickles; it queues again once its body is in.
  app.addHook('preParsing', async (request) => {
    if (request.is404 || !carriesBody(request) || request.raw.complete) return;
    const priority = request.routeOptions.config.priority;
    if (priority === undefined || priority === 'exempt') return;
    held.get(request)?.();
    held.delete(request);
    awaitingBody.add(request);
    if (slowUploadsPerClient > 0) {
      let mine = arriving.get(request.ip);
      if (!mine) arriving.set(request.ip, (mine = new Map()));
      mine.set(request, now());
      request.raw.once('end', () => stopArriving(request));
      request.raw.once('close', () => stopArriving(request));
    }
  });

  app.addHook('preValidation', async (request, reply) => {
    if (!awaitingBody.has(request)) return;
    awaitingBody.delete(request);
    stopArriving(request);
    if (admission) await admit(request, reply, request.routeOptions.config.priority as Priority);
  });

  if (admission) {
    // A callback hook, not an async one (see the Server-Timing hook in http.ts: an async onSend
    // defers the send a tick, and a traced response then writes its headers twice).
    app.addHook('onSend', (request, _reply, payload, done) => {
      held.get(request)?.();
      done(null, payload);
    });
  }
}
