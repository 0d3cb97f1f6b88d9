// Metrics of this process, kept in memory, in two forms:
// - Prometheus (/metrics): request counts and latency by route pattern and status, the database
//   pool, plus the process metrics prom-client collects. One registry per app, so tests can build
//   several apps in one process.
// - Counters that the process writes to the database every few seconds (see
//   modules/operations/telemetry.ts), so that the console can add up every process: requests by
//   status class, errors by route and problem code, a latency histogram, and whatever else a
//   module counts (job outcomes, processor answers). Counting is a Map update: nothing is written
//   per request.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Db } from './db.ts';

/** Upper bounds (ms) of the latency histogram the counters keep; one more bucket holds the rest. */
export const latencyBucketsMs = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] as const;

/** What a process counted since its last flush: "<metric>\t<label>" -> [count, sum], and the latency histogram. */
export interface CounterSnapshot {
  counters: Record<string, [number, number]>;
  latency: number[];
}

export interface Counters {
  /** Adds count (and sum, e.g. an amount or a duration) to one metric and label. */
  add(metric: string, label: string, count?: number, sum?: number): void;
  observeLatencyMs(ms: number): void;
  /** Answers what was counted since the last drain and starts again from zero; null when nothing was. */
  drain(): CounterSnapshot | null;
  /** Puts a drained snapshot back (its flush failed), so that nothing counted is lost. */
  restore(snapshot: CounterSnapshot): void;
}

export function createCounters(): Counters {
  let counters = new Map<string, [number, number]>();
  let latency = new Array<number>(latencyBucketsMs.length + 1).fill(0);
  let observed = 0;
  const add = (key: string, count: number, sum: number) => {
    const entry = counters.get(key);
    if (entry) {
      entry[0] += count;
      entry[1] += sum;
    } else counters.set(key, [count, sum]);
  };
  return {
    add(metric, label, count = 1, sum = 0) {
      add(`${metric}\t${label}`, count, sum);
    },
    observeLatencyMs(ms) {
      let i = 0;
      while (i < latencyBucketsMs.length && ms > latencyBucketsMs[i]!) i++;
      latency[i]!++;
      observed++;
    },
    drain() {
      if (counters.size === 0 && observed === 0) return null;
      const snapshot = { counters: Object.fromEntries(counters), latency };
      counters = new Map();
      latency = new Array<number>(latencyBucketsMs.length + 1).fill(0);
      observed = 0;
      return snapshot;
    },
    restore(snapshot) {
      for (const [key, [count, sum]] of Object.entries(snapshot.counters)) add(key, count, sum);
      snapshot.latency.forEach((n, i) => {
        latency[i]! += n;
        observed += n;
      });
    },
  };
}

/** The problem code of an error answer, read from its problem+json body (every 4xx and 5xx has one). */
function problemCodeOf(payload: unknown): string {
  if (typeof payload !== 'string') return '';
  return /"code":"([a-z0-9_]{1,64})"/.exec(payload)?.[1] ?? '';
}

/** Requests refused at the door: shed under overload (503) and over a rate limit (429). */
export function limitCounters(registry: Registry) {
  return {
    shed: new Counter({
      name: 'engine_room_requests_shed_total',
      help: 'Requests answered 503 because their wait for a turn was or would be too long, by reason (predicted, wait, queue_full, event_loop) and priority class (critical, normal, low)',
      labelNames: ['reason', 'priority'] as const,
      registers: [registry],
    }),
    rateLimited: new Counter({
      name: 'engine_room_requests_rate_limited_total',
      help: 'Requests answered 429 by the API-wide rate limits, by policy (read, write, auth), and past the slow uploads one client address may have (slow_uploads)',
      labelNames: ['policy'] as const,
      registers: [registry],
    }),
  };
}

export function registerMetrics(app: FastifyInstance, options: { counters?: Counters; db?: Db } = {}): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests answered, by method, route pattern and status code',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time to answer HTTP requests, by method, route pattern and status code',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const poolStats = options.db?.poolStats?.bind(options.db);
  if (poolStats) {
    new Gauge({
      name: 'engine_room_db_pool_connections',
      help: "Connections of this process's database pool, by state (in_use, idle)",
      labelNames: ['state'] as const,
      registers: [registry],
      collect() {
        const s = poolStats();
        this.set({ state: 'in_use' }, s.inUse);
        this.set({ state: 'idle' }, s.size - s.inUse);
      },
    });
    new Gauge({
      name: 'engine_room_db_pool_waiting_clients',
      help: 'Queries of this process waiting for a free connection of its pool',
      registers: [registry],
      collect() {
        this.set(poolStats().waiting);
      },
    });
  }

  // What the client got is what went out when the answer was sent: the status and the problem code
  // as the last onSend saw them. reply.statusCode can change after that without reaching the wire:
  // an error handled once the answer is out sets 500 on a reply whose 201 was already sent (Fastify
  // then refuses the second send, and onResponse, on 'finish', would read the 500). The console
  // once showed such a 500 on POST /v1/auth/signup that no client received. A response sent
  // without onSend (a hijacked stream, Fastify's last-resort error answer) keeps reply.statusCode.
  const answered = new WeakMap<FastifyRequest, { status: number; code: string }>();
  // A callback hook, not an async one: an async onSend defers the send a tick (see http.ts).
  app.addHook('onSend', (request, reply, payload, done) => {
    const status = reply.statusCode;
    answered.set(request, { status, code: status >= 400 ? problemCodeOf(payload) : '' });
    done(null, payload);
  });
  const counters = options.counters;
  app.addHook('onResponse', async (request, reply) => {
    // The pattern, not the raw URL, so that ids do not explode the label set.
    const route = request.routeOptions.url ?? 'unmatched';
    const sent = answered.get(request);
    const status = sent?.status ?? reply.statusCode;
    const labels = { method: request.method, route, status: String(status) };
    requests.inc(labels);
    duration.observe(labels, reply.elapsedTime / 1000);
    if (counters) {
      counters.add('http.requests', `${Math.floor(status / 100)}xx`, 1, Math.round(reply.elapsedTime));
      counters.observeLatencyMs(reply.elapsedTime);
      if (status >= 400) counters.add('http.errors', `${request.method} ${route}\t${status}\t${sent?.code ?? ''}`);
    }
  });
  return registry;
}
