// The load generator: N virtual customers driving the HTTP API, one scenario at a time. It runs in
// a child process of the bench (forked with IPC), so its CPU time is measured apart from the
// orchestrator's and the server's, and its timings are not disturbed by the bench's own sampling.
//
// Messages: the bench sends { type: 'run', spec } and { type: 'exit' }; this process answers
// { type: 'progress', ... } about twice a second and { type: 'done', result } at the end of a run.
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { httpClient, jsonOf, type HttpClient, type Reply } from './http.ts';
import { latencyRecorder, type Percentiles } from './stats.ts';
import type { Customer } from './seed.ts';
import { flashBurst, overload, type BurstRound, type OverloadFigures } from './overload.ts';

export const scenarios = ['steady', 'flash-sale', 'retry-storm', 'mixed', 'flash-burst', 'overload'] as const;
export type Scenario = (typeof scenarios)[number];
/** What `npm run bench` runs without --scenarios: flash-burst and overload are asked for by name. */
export const defaultScenarios: readonly Scenario[] = scenarios.filter((s) => s !== 'overload' && s !== 'flash-burst');

export interface RunSpec {
  scenario: Scenario;
  targets: string[];
  customers: Customer[];
  clients: number;
  skus: string[];
  hotSku: string;
  productIds: string[];
  seconds: number;
  warmupSeconds: number;
  /** Paced: this many client iterations per second in total; null: as fast as answers come. */
  rate: number | null;
  /** Prefix of this run's idempotency keys. */
  tag: string;
  timeoutMs: number;
  paymentToken: string;
  retryStorm: { abandonShare: number; abandonMaxMs: number; resendShare: number };
  /** The messaging endpoints answer (else mixed leaves messages out). */
  messaging: boolean;
  /** flash-burst and overload (bench/lib/overload.ts). */
  adminToken?: string;
  burst?: { stock: number; rounds: number };
  overload?: { calibrationSeconds: number; factor: number };
}

export interface OpStats {
  count: number;
  latency: Percentiles;
}

export interface LoadResult {
  scenario: Scenario;
  clients: number;
  measuredSeconds: number;
  /** HTTP requests answered within the measured window. */
  requests: number;
  /** Orders acknowledged (a key's first 201) within the measured window. */
  orders: number;
  ordersPerSecond: number;
  requestsPerSecond: number;
  /** Latency of the requests answered within the window (status 0 failures excluded). */
  latency: Percentiles;
  /** Per status within the window: "201", "409 out_of_stock", "ECONNRESET", "abandoned" (retry-storm) ... */
  statuses: Record<string, number>;
  /** Per operation (mixed). */
  ops: Record<string, OpStats>;
  /** Distinct order ids acknowledged during the whole run (warm-up and the tail included). */
  ackedOrders: number;
  /** Keys each client made, `<tag>-<client>-<n>` for n below it (the database keeps only their SHA-256). */
  keysPerClient: number[];
  /** A retry with one key answered a different order than an earlier answer with that key (must be 0). */
  idMismatches: number;
  replays: number;
  abandoned: number;
  /** Requests answered 503 by load shedding (flash-burst, overload; not in the latency of overload). */
  shed: number;
  /** Seconds into the measured window when the hot SKU first answered out_of_stock. */
  soldOutAt: number | null;
  /** flash-burst: each round. */
  bursts?: BurstRound[];
  /** overload: the best rate, then twice it. */
  overload?: OverloadFigures;
  startedAt: string;
  measuredFrom: string;
  measuredTo: string;
  endedAt: string;
  notes: string[];
  loadgen: { cpuSeconds: number; wallSeconds: number; eventLoopDelayP99Ms: number; eventLoopUtilization: number };
}

type Outcome = 'ok' | 'expected' | 'error';

function statusKey(reply: Reply): string {
  if (reply.status === 0) return reply.error ?? 'network error';
  if (reply.status < 400) return String(reply.status);
  const code = jsonOf<{ code?: string }>(reply)?.code;
  return code ? `${reply.status} ${code}` : String(reply.status);
}

const rand = (n: number) => Math.floor(Math.random() * n);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runLoad(
  spec: RunSpec,
  onProgress: (p: { elapsed: number; phase: string; orders: number; errors: number; requests: number }) => void,
): Promise<LoadResult> {
  if (spec.scenario === 'flash-burst' || spec.scenario === 'overload') return runSheddingScenario(spec, onProgress);
  const clients: HttpClient[] = spec.targets.map((t) => httpClient(t));
  const latency = latencyRecorder();
  const ops = new Map<string, ReturnType<typeof latencyRecorder>>();
  const statuses: Record<string, number> = {};
  const keyToOrder = new Map<string, string>();
  const keysPerClient: number[] = Array(spec.clients).fill(0);
  const acked = new Set<string>();
  const notes: string[] = [];
  let requests = 0,
    orders = 0,
    errors = 0,
    replays = 0,
    abandoned = 0,
    idMismatches = 0;
  let soldOutAt: number | null = null;

  const t0 = Date.now();
  const measureFrom = t0 + spec.warmupSeconds * 1000;
  const measureTo = measureFrom + spec.seconds * 1000;
  const inWindow = (t: number) => t >= measureFrom && t <= measureTo;

  const loop = monitorEventLoopDelay({ resolution: 5 });
  let cpuStart = process.cpuUsage();
  let eluStart = performance.eventLoopUtilization();
  let windowOpen = false;
  const openWindow = () => {
    if (windowOpen) return;
    windowOpen = true;
    cpuStart = process.cpuUsage();
    eluStart = performance.eventLoopUtilization();
    loop.enable();
  };
  let cpu = { user: 0, system: 0 };
  let elu = 0;
  const closeWindow = () => {
    if (!windowOpen) return;
    windowOpen = false;
    cpu = process.cpuUsage(cpuStart);
    elu = performance.eventLoopUtilization(eluStart).utilization;
    loop.disable();
  };
  if (spec.warmupSeconds <= 0) openWindow();
  const windowTimers = [
    setTimeout(openWindow, Math.max(0, measureFrom - Date.now())),
    setTimeout(closeWindow, measureTo - Date.now()),
  ];

  /** Counts a reply; answers whether it was a success, an expected refusal or an error. */
  function record(op: string, reply: Reply, expected: (key: string) => boolean): Outcome {
    const now = Date.now();
    const key = statusKey(reply);
    const outcome: Outcome = reply.status >= 200 && reply.status < 300 ? 'ok' : expected(key) ? 'expected' : 'error';
    if (!inWindow(now)) return outcome;
    statuses[key] = (statuses[key] ?? 0) + 1;
    if (reply.error === 'abandoned') {
      abandoned++;
      return outcome;
    }
    if (outcome === 'error') errors++;
    if (reply.status !== 0) {
      requests++;
      latency.add(reply.ms);
      let r = ops.get(op);
      if (!r) ops.set(op, (r = latencyRecorder()));
      r.add(reply.ms);
    }
    return outcome;
  }

  /** Notes an acknowledged order for its key; counts it once per key, and any disagreement. */
  function acknowledge(key: string, reply: Reply): string | undefined {
    const id = jsonOf<{ id?: string }>(reply)?.id;
    if (!id) return undefined;
    if (reply.replayed && inWindow(Date.now())) replays++;
    const before = keyToOrder.get(key);
    if (before === undefined) {
      keyToOrder.set(key, id);
      acked.add(id);
      if (inWindow(Date.now())) orders++;
    } else if (before !== id) {
      idMismatches++;
    }
    return id;
  }

  const twoSkus = () => {
    const i = rand(Math.max(1, spec.skus.length - 8));
    const j = Math.min(spec.skus.length - 1, i + 1 + rand(8));
    return [{ sku: spec.skus[i]!, quantity: 1 }, ...(j !== i ? [{ sku: spec.skus[j]!, quantity: 1 }] : [])];
  };
  const orderBody = (lines: { sku: string; quantity: number }[]) => ({
    lines,
    payment: { method: 'card', token: spec.paymentToken },
  });
  const outOfStock = (k: string) => k === '409 out_of_stock';

  async function steadyOrder(
    http: HttpClient,
    customer: Customer,
    key: string,
    hot: boolean,
  ): Promise<string | undefined> {
    const reply = await http.request('POST', '/v1/orders', {
      token: customer.token,
      idempotencyKey: key,
      timeoutMs: spec.timeoutMs,
      body: orderBody(hot ? [{ sku: spec.hotSku, quantity: 1 }] : twoSkus()),
    });
    const outcome = record('place order', reply, outOfStock);
    if (reply.status === 201) return acknowledge(key, reply);
    if (hot && outcome === 'expected' && soldOutAt === null) soldOutAt = Math.max(0, (Date.now() - measureFrom) / 1000);
    return undefined;
  }

  // A client that gives up on some requests at a random moment (its timeout) and sends them again
  // with the same key at once, and sometimes re-sends one it did get an answer to (a lost reply).
  async function stormOrder(http: HttpClient, customer: Customer, key: string): Promise<void> {
    const body = orderBody(twoSkus());
    let resent = false;
    for (let attempt = 0; attempt < 50; attempt++) {
      const abandon = Math.random() < (attempt === 0 ? spec.retryStorm.abandonShare : spec.retryStorm.abandonShare / 2);
      const reply = await http.request('POST', '/v1/orders', {
        token: customer.token,
        idempotencyKey: key,
        body,
        timeoutMs: spec.timeoutMs,
        ...(abandon ? { abandonAfterMs: Math.random() * spec.retryStorm.abandonMaxMs } : {}),
      });
      record('place order', reply, (k) => k === 'abandoned' || k === '409 idempotency_key_in_use' || outOfStock(k));
      if (reply.status === 0 || reply.status >= 500) continue;
      if (reply.status === 409 && jsonOf<{ code?: string }>(reply)?.code === 'idempotency_key_in_use') {
        await sleep(5);
        continue;
      }
      if (reply.status === 201) acknowledge(key, reply);
      if (reply.status === 201 && !resent && Math.random() < spec.retryStorm.resendShare) {
        resent = true;
        continue;
      }
      return;
    }
  }

  async function client(c: number): Promise<void> {
    const http = clients[c % clients.length]!;
    const customer = spec.customers[c % spec.customers.length]!;
    const mine: string[] = [];
    let conversation: string | undefined;
    let n = 0;
    const interval = spec.rate ? (spec.clients / spec.rate) * 1000 : 0;
    let nextAt = Date.now() + (interval ? Math.random() * interval : 0);
    while (Date.now() < measureTo) {
      if (interval) {
        const wait = nextAt - Date.now();
        if (wait > 0) await sleep(wait);
        nextAt = Math.max(nextAt + interval, Date.now() - interval);
        if (Date.now() >= measureTo) break;
      }
      const key = `${spec.tag}-${c}-${n++}`;
      keysPerClient[c] = n;
      switch (spec.scenario) {
        case 'steady':
          await steadyOrder(http, customer, key, false);
          break;
        case 'flash-sale':
          await steadyOrder(http, customer, key, true);
          break;
        case 'retry-storm':
          await stormOrder(http, customer, key);
          break;
        case 'mixed':
          conversation = await mixedStep(http, customer, key, mine, conversation);
          break;
      }
    }
  }

  // Browse, look, order, check, cancel, write: the shape of a shop's traffic.
  const mixedWeights: [string, number][] = [
    ['browse', 35],
    ['view product', 15],
    ['place order', 25],
    ['view order', 10],
    ['cancel order', 8],
    ['message', spec.messaging ? 7 : 0],
  ];
  const mixedTotal = mixedWeights.reduce((s, [, w]) => s + w, 0);
  if (!spec.messaging && spec.scenario === 'mixed')
    notes.push('messaging left out: /v1/conversations answers 404 (not built yet)');

  async function mixedStep(
    http: HttpClient,
    customer: Customer,
    key: string,
    mine: string[],
    conversation: string | undefined,
  ): Promise<string | undefined> {
    let pick = rand(mixedTotal);
    let op = 'browse';
    for (const [name, w] of mixedWeights) {
      if (pick < w) {
        op = name;
        break;
      }
      pick -= w;
    }
    if ((op === 'view order' || op === 'cancel order') && mine.length === 0) op = 'place order';
    const t = customer.token;
    switch (op) {
      case 'browse':
        record(
          op,
          await http.request('GET', '/v1/products?limit=20', { token: t, timeoutMs: spec.timeoutMs }),
          () => false,
        );
        break;
      case 'view product':
        record(
          op,
          await http.request('GET', `/v1/products/${spec.productIds[rand(spec.productIds.length)]}`, {
            token: t,
            timeoutMs: spec.timeoutMs,
          }),
          () => false,
        );
        break;
      case 'place order': {
        const id = await steadyOrder(http, customer, key, false);
        if (id) {
          mine.push(id);
          if (mine.length > 50) mine.shift();
        }
        break;
      }
      case 'view order':
        record(
          op,
          await http.request('GET', `/v1/orders/${mine[rand(mine.length)]}`, { token: t, timeoutMs: spec.timeoutMs }),
          () => false,
        );
        break;
      case 'cancel order': {
        const id = mine.splice(rand(mine.length), 1)[0]!;
        record(
          op,
          await http.request('POST', `/v1/orders/${id}/cancel`, {
            token: t,
            idempotencyKey: `${key}-cancel`,
            timeoutMs: spec.timeoutMs,
          }),
          (k) => k === '409 invalid_state',
        );
        break;
      }
      case 'message': {
        if (!conversation) {
          const reply = await http.request('POST', '/v1/conversations', {
            token: t,
            idempotencyKey: `${key}-cnv`,
            timeoutMs: spec.timeoutMs,
            body: { subject: 'Where is my order?', body: 'Hello, a question about my order.' },
          });
          record(op, reply, (k) => k.startsWith('429'));
          return jsonOf<{ id?: string }>(reply)?.id ?? undefined;
        }
        const reply = await http.request('POST', `/v1/conversations/${conversation}/messages`, {
          token: t,
          idempotencyKey: `${key}-msg`,
          timeoutMs: spec.timeoutMs,
          body: { body: 'Any news? Thanks.' },
        });
        record(op, reply, (k) => k.startsWith('429'));
        break;
      }
    }
    return conversation;
  }

  const progress = setInterval(() => {
    const now = Date.now();
    onProgress({
      elapsed: (now - t0) / 1000,
      phase: now < measureFrom ? 'warm-up' : now < measureTo ? 'measuring' : 'finishing',
      orders,
      errors,
      requests,
    });
  }, 500);
  try {
    await Promise.all(Array.from({ length: spec.clients }, (_, c) => client(c)));
  } finally {
    clearInterval(progress);
    for (const t of windowTimers) clearTimeout(t);
    closeWindow();
    for (const h of clients) h.close();
  }
  const measuredSeconds = spec.seconds;
  return {
    scenario: spec.scenario,
    clients: spec.clients,
    measuredSeconds,
    requests,
    orders,
    ordersPerSecond: orders / measuredSeconds,
    requestsPerSecond: requests / measuredSeconds,
    latency: (spec.scenario === 'mixed' ? latency : (ops.get('place order') ?? latency)).summary(),
    shed: 0,
    statuses,
    ops: Object.fromEntries([...ops].map(([name, r]) => [name, { count: r.count, latency: r.summary() }])),
    ackedOrders: acked.size,
    keysPerClient,
    idMismatches,
    replays,
    abandoned,
    soldOutAt,
    startedAt: new Date(t0).toISOString(),
    measuredFrom: new Date(measureFrom).toISOString(),
    measuredTo: new Date(measureTo).toISOString(),
    endedAt: new Date().toISOString(),
    notes,
    loadgen: {
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      wallSeconds: measuredSeconds,
      eventLoopDelayP99Ms: loop.percentile(99) / 1e6,
      eventLoopUtilization: elu,
    },
  };
}

// As a forked child: serve runs until told to exit.
if (process.send && process.argv.includes('--loadgen-child')) {
  process.on('message', (msg: { type: 'run'; spec: RunSpec } | { type: 'exit' }) => {
    if (msg.type === 'exit') process.exit(0);
    runLoad(msg.spec, (p) => process.send!({ type: 'progress', ...p })).then(
      (result) => process.send!({ type: 'done', result }),
      (err: Error) => process.send!({ type: 'failed', error: err.stack ?? String(err) }),
    );
  });
  process.on('disconnect', () => process.exit(0));
}

/** flash-burst and overload: their own shapes of load (bench/lib/overload.ts), reported in the common result. */
async function runSheddingScenario(
  spec: RunSpec,
  onProgress: (p: { elapsed: number; phase: string; orders: number; errors: number; requests: number }) => void,
): Promise<LoadResult> {
  const t0 = Date.now();
  const cpuStart = process.cpuUsage();
  const eluStart = performance.eventLoopUtilization();
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const progress = setInterval(
    () => onProgress({ elapsed: (Date.now() - t0) / 1000, phase: 'measuring', orders: 0, errors: 0, requests: 0 }),
    500,
  );
  const statuses: Record<string, number> = {};
  let result: Pick<LoadResult, 'requests' | 'orders' | 'latency' | 'shed' | 'bursts' | 'overload' | 'ackedOrders'>;
  try {
    if (spec.scenario === 'flash-burst') {
      const bursts = await flashBurst({
        targets: spec.targets,
        customers: spec.customers.slice(0, spec.clients),
        adminToken: spec.adminToken!,
        stock: spec.burst!.stock,
        rounds: spec.burst!.rounds,
        tag: spec.tag,
        paymentToken: spec.paymentToken,
        timeoutMs: spec.timeoutMs,
        log,
      });
      const all = latencyRecorder();
      for (const b of bursts) {
        for (const [k, n] of Object.entries({
          '201': b.placed,
          '409 out_of_stock': b.outOfStock,
          '503 unavailable': b.shed,
          ...b.other,
        }))
          if (n) statuses[k] = (statuses[k] ?? 0) + n;
        all.add(b.latency.p99);
      }
      const placed = bursts.reduce((n, b) => n + b.placed, 0);
      result = {
        requests: bursts.reduce((n, b) => n + b.buyers, 0),
        orders: placed,
        ackedOrders: placed,
        latency: all.summary(),
        shed: bursts.reduce((n, b) => n + b.shed, 0),
        bursts,
      };
    } else {
      const figures = await overload({
        targets: spec.targets,
        customers: spec.customers,
        clients: spec.clients,
        skus: spec.skus,
        calibrationSeconds: spec.overload!.calibrationSeconds,
        seconds: spec.seconds,
        factor: spec.overload!.factor,
        tag: spec.tag,
        paymentToken: spec.paymentToken,
        timeoutMs: spec.timeoutMs,
        log,
      });
      statuses['201'] = figures.placed;
      statuses['503 unavailable'] = figures.shed;
      Object.assign(statuses, figures.other);
      result = {
        requests: figures.placed,
        orders: figures.placed,
        ackedOrders: figures.placed,
        latency: figures.accepted,
        shed: figures.shed,
        overload: figures,
      };
    }
  } finally {
    clearInterval(progress);
    loop.disable();
  }
  const cpu = process.cpuUsage(cpuStart);
  const wallSeconds = (Date.now() - t0) / 1000;
  const measuredSeconds = spec.scenario === 'overload' ? spec.seconds : wallSeconds;
  return {
    scenario: spec.scenario,
    clients: spec.clients,
    measuredSeconds,
    ...result,
    ordersPerSecond: result.orders / measuredSeconds,
    requestsPerSecond: result.requests / measuredSeconds,
    statuses,
    ops: {},
    keysPerClient: [],
    idMismatches: 0,
    replays: 0,
    abandoned: 0,
    soldOutAt: null,
    startedAt: new Date(t0).toISOString(),
    measuredFrom: new Date(t0).toISOString(),
    measuredTo: new Date().toISOString(),
    endedAt: new Date().toISOString(),
    notes: [],
    loadgen: {
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      wallSeconds,
      eventLoopDelayP99Ms: loop.percentile(99) / 1e6,
      eventLoopUtilization: performance.eventLoopUtilization(eluStart).utilization,
    },
  };
}
