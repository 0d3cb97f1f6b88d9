// The panels of the operations overview, one builder each: what the reads of service.ts's
// overview() answered (repo.ts), made into what the page shows. Pure functions of their inputs, so
// a panel can be read (and changed) without the others.
import type { Db } from '../../platform/db.ts';
import { latencyBucketsMs } from '../../platform/metrics.ts';
import { deadLetterQueueOf } from '../../platform/queue.ts';
import { chargeQueue } from '../payments/outbox.ts';
import { deliverQueue } from '../webhooks/service.ts';
import type * as repo from './repo.ts';
import type { Overview } from './schemas.ts';

// ---------------------------------------------------------------------------------------------
// The window and the counters every time-series panel reads

/** Point widths the series use: the smallest that keeps a window to about 150 points. */
const steps = [10, 30, 60, 120, 300, 600, 900, 1800];

export function stepFor(windowSeconds: number): number {
  return steps.find((s) => windowSeconds / s <= 150) ?? steps[steps.length - 1]!;
}

/** The points of a window (start times, in seconds), and where a bucket falls among them. */
export interface OverviewWindow {
  seconds: number;
  step: number;
  from: Date;
  to: Date;
  times: number[];
  /** The point a bucket belongs to (outside 0 .. times.length - 1: not in the series). */
  indexOf(bucket: Date): number;
  /** A series of zeros, one per point. */
  zeros(): number[];
}

export function windowOf(now: Date, windowSeconds: number): OverviewWindow {
  const step = stepFor(windowSeconds);
  const stepMs = step * 1000;
  // Points start on multiples of the step; the one still filling (it would dip) is left out of the
  // series, not out of the totals.
  const firstPoint = Math.floor((now.getTime() - windowSeconds * 1000) / stepMs) * stepMs;
  const lastPoint = Math.floor(now.getTime() / stepMs) * stepMs - stepMs;
  const times: number[] = [];
  for (let t = firstPoint; t <= lastPoint; t += stepMs) times.push(t / 1000);
  return {
    seconds: windowSeconds,
    step,
    from: new Date(firstPoint),
    to: now,
    times,
    indexOf: (bucket) => Math.round((bucket.getTime() - firstPoint) / stepMs),
    zeros: () => times.map(() => 0),
  };
}

export function windowPanel(w: OverviewWindow): Overview['window'] {
  return {
    seconds: w.seconds,
    stepSeconds: w.step,
    from: w.from.toISOString(),
    to: w.to.toISOString(),
    times: w.times,
  };
}

/** The counters the processes flushed, over the window: per "<metric>\t<label>" key, a series, a total and a sum. */
export interface WindowCounters {
  /** Adds up the series of every key that starts with one of the prefixes, per `per` (seconds or minutes of a point). */
  seriesOf(prefixes: string[], per: number): number[];
  /** Adds up the totals of every key that starts with one of the prefixes. */
  totalOf(prefixes: string[]): number;
  /** The sums of the keys "<prefix><currency>", by currency. */
  amountsOf(prefix: string): { currency: string; amount: number }[];
  /** Every key's total. */
  readonly totals: ReadonlyMap<string, number>;
}

export function countersOf(
  rows: { bucket: Date; key: string; count: number; sum: number }[],
  w: OverviewWindow,
): WindowCounters {
  const series = new Map<string, number[]>();
  const total = new Map<string, number>();
  const sums = new Map<string, number>();
  for (const row of rows) {
    total.set(row.key, (total.get(row.key) ?? 0) + row.count);
    sums.set(row.key, (sums.get(row.key) ?? 0) + row.sum);
    const i = w.indexOf(row.bucket);
    if (i < 0 || i >= w.times.length) continue;
    let s = series.get(row.key);
    if (!s) series.set(row.key, (s = w.zeros()));
    s[i]! += row.count;
  }
  return {
    seriesOf(prefixes, per) {
      const out = w.zeros();
      for (const [key, s] of series)
        if (prefixes.some((p) => key.startsWith(p)))
          s.forEach((v, i) => {
            out[i]! += v;
          });
      return out.map((v) => Math.round((v / per) * 1000) / 1000);
    },
    totalOf(prefixes) {
      let n = 0;
      for (const [key, v] of total) if (prefixes.some((p) => key.startsWith(p))) n += v;
      return n;
    },
    amountsOf(prefix) {
      const byCurrency = new Map<string, number>();
      for (const [key, v] of sums) {
        if (!key.startsWith(prefix)) continue;
        const currency = key.slice(prefix.length);
        byCurrency.set(currency, (byCurrency.get(currency) ?? 0) + v);
      }
      return moneyList(byCurrency);
    },
    totals: total,
  };
}

function moneyList(byCurrency: Map<string, number>) {
  return [...byCurrency]
    .filter(([, amount]) => amount !== 0)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([currency, amount]) => ({ currency, amount }));
}

// ---------------------------------------------------------------------------------------------
// The panels

/** The q-quantile of a histogram of counts per latencyBucketsMs bucket, interpolated inside its bucket. */
export function quantileMs(histogram: number[], q: number): number | null {
  const total = histogram.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < histogram.length; i++) {
    const n = histogram[i] ?? 0;
    if (n > 0 && seen + n >= rank) {
      const lower = i === 0 ? 0 : latencyBucketsMs[i - 1]!;
      // The open-ended last bucket: all that can be said is "at least its lower bound".
      if (i >= latencyBucketsMs.length) return lower;
      const upper = latencyBucketsMs[i]!;
      return Math.round((lower + ((rank - seen) / n) * (upper - lower)) * 100) / 100;
    }
    seen += n;
  }
  return latencyBucketsMs[latencyBucketsMs.length - 1]!;
}

export function trafficPanel(counters: WindowCounters, histogram: number[], step: number): Overview['traffic'] {
  const requests = counters.totalOf(['http.requests\t']);
  const errors5xx = counters.totalOf(['http.requests\t5xx']);
  const errors4xx = counters.totalOf(['http.requests\t4xx']);
  const topErrors = [...counters.totals]
    .filter(([key]) => key.startsWith('http.errors\t'))
    .map(([key, count]) => {
      const [, route = '', status = '0', code = ''] = key.split('\t');
      return { route, status: Number(status), code, count };
    })
    .sort((a, b) => b.count - a.count || a.route.localeCompare(b.route))
    .slice(0, 8);
  // Load shedding's refusals (src/platform/load-shedding.ts counts them as http.shed, reason and class).
  const shed = [...counters.totals]
    .filter(([key]) => key.startsWith('http.shed\t'))
    .map(([key, count]) => {
      const [, reason = '', priority = ''] = key.split('\t');
      return { reason, priority, count };
    })
    .sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason));
  return {
    requestsPerSecond: counters.seriesOf(['http.requests\t'], step),
    errors5xxPerSecond: counters.seriesOf(['http.requests\t5xx'], step),
    errors4xxPerSecond: counters.seriesOf(['http.requests\t4xx'], step),
    requests,
    errors5xx,
    errors4xx,
    errorRate5xx: requests > 0 ? errors5xx / requests : 0,
    errorRate4xx: requests > 0 ? errors4xx / requests : 0,
    latencyMs: { p50: quantileMs(histogram, 0.5), p95: quantileMs(histogram, 0.95), p99: quantileMs(histogram, 0.99) },
    topErrors,
    shed,
  };
}

/** Orders, from the sums the outbox reader keeps (order-stats.ts). */
export function ordersPanel(
  rows: { bucket: Date; type: string; currency: string; count: number; amount: number }[],
  w: OverviewWindow,
): Overview['orders'] {
  const orderSeries = new Map<string, number[]>();
  const orderTotals = new Map<string, number>();
  const paid = new Map<string, number>();
  for (const row of rows) {
    orderTotals.set(row.type, (orderTotals.get(row.type) ?? 0) + row.count);
    if (row.type === 'order.paid') paid.set(row.currency, (paid.get(row.currency) ?? 0) + row.amount);
    const i = w.indexOf(row.bucket);
    if (i < 0 || i >= w.times.length) continue;
    let s = orderSeries.get(row.type);
    if (!s) orderSeries.set(row.type, (s = w.zeros()));
    s[i]! += row.count;
  }
  const perMinute = (type: string) =>
    (orderSeries.get(type) ?? w.zeros()).map((v) => Math.round(((v * 60) / w.step) * 1000) / 1000);
  return {
    placedPerMinute: perMinute('order.created'),
    paidPerMinute: perMinute('order.paid'),
    paymentFailedPerMinute: perMinute('order.payment_failed'),
    cancelledPerMinute: perMinute('order.cancelled'),
    placed: orderTotals.get('order.created') ?? 0,
    paid: orderTotals.get('order.paid') ?? 0,
    paymentFailed: orderTotals.get('order.payment_failed') ?? 0,
    cancelled: orderTotals.get('order.cancelled') ?? 0,
    paidAmounts: moneyList(paid),
  };
}

/** The processor's answers to charges (counted by the workers), and the charge jobs dead-lettered. */
export function chargesPanel(counters: WindowCounters, step: number): Overview['charges'] {
  const minutes = step / 60;
  const outcome = (name: string) => `charges\t${name}\t`;
  const dead = `jobs\t${chargeQueue}\tdead_lettered`;
  return {
    succeededPerMinute: counters.seriesOf([outcome('succeeded')], minutes),
    declinedPerMinute: counters.seriesOf([outcome('declined')], minutes),
    retriedPerMinute: counters.seriesOf([outcome('retryable'), outcome('error')], minutes),
    failedPerMinute: counters.seriesOf([dead], minutes),
    succeeded: counters.totalOf([outcome('succeeded')]),
    declined: counters.totalOf([outcome('declined')]),
    retried: counters.totalOf([outcome('retryable'), outcome('error')]),
    failed: counters.totalOf([dead]),
  };
}

export function refundsPanel(counters: WindowCounters): Overview['refunds'] {
  return {
    succeeded: counters.totalOf(['refunds\tsucceeded\t']),
    declined: counters.totalOf(['refunds\tdeclined\t']),
    retried: counters.totalOf(['refunds\tretryable\t', 'refunds\terror\t']),
    amounts: counters.amountsOf('refunds\tsucceeded\t'),
  };
}

/** Queues: waiting and retrying from the job table, running from the live processes. */
export function queuesPanel(queues: repo.QueueRow[], processes: repo.ProcessRow[]): Overview['queues'] {
  const running = new Map<string, number>();
  for (const p of processes)
    for (const [queue, n] of Object.entries(p.running_jobs ?? {})) running.set(queue, (running.get(queue) ?? 0) + n);
  const byName = new Map(queues.map((q) => [q.name, q]));
  return queues
    .filter((q) => !q.name.endsWith('.dead-letter'))
    .map((q) => ({
      name: q.name,
      waiting: q.waiting,
      running: running.get(q.name) ?? 0,
      retrying: q.retrying,
      deadLetters: byName.get(deadLetterQueueOf(q.name))?.waiting ?? 0,
      lagSeconds: Math.max(0, Math.round((q.lag_seconds ?? 0) * 10) / 10),
    }));
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '';
  }
}

export function webhooksPanel(
  counters: WindowCounters,
  step: number,
  endpoints: { total: number; failing: number; disabled: number },
  problems: repo.WebhookProblemRow[],
): Overview['webhooks'] {
  const minutes = step / 60;
  const jobs = (outcome: string) => `jobs\t${deliverQueue}\t${outcome}`;
  return {
    succeededPerMinute: counters.seriesOf([jobs('completed')], minutes),
    failedPerMinute: counters.seriesOf([jobs('failed'), jobs('dead_lettered')], minutes),
    succeeded: counters.totalOf([jobs('completed')]),
    failed: counters.totalOf([jobs('failed')]),
    deadLettered: counters.totalOf([jobs('dead_lettered')]),
    endpoints: endpoints.total,
    failingEndpoints: endpoints.failing,
    disabledEndpoints: endpoints.disabled,
    problems: problems.map((p) => ({
      id: p.id,
      host: hostOf(p.url),
      enabled: p.enabled,
      failingSince: p.failing_since?.toISOString() ?? null,
      disabledReason: p.disabled_reason,
      lastError: p.last_error ?? (p.last_status !== null ? `HTTP ${p.last_status}` : null),
      lastAttemptAt: p.last_attempt_at?.toISOString() ?? null,
    })),
  };
}

export function processesPanel(processes: repo.ProcessRow[]): Overview['processes'] {
  return processes.map((p) => ({
    id: p.id,
    host: p.host,
    pid: p.pid,
    version: p.version,
    roles: [...(p.serves_http ? ['api' as const] : []), ...(p.runs_workers ? ['worker' as const] : [])],
    startedAt: p.started_at.toISOString(),
    seenAt: p.seen_at.toISOString(),
    rssBytes: p.rss_bytes,
    heapUsedBytes: p.heap_used_bytes,
    eventLoopLagMs: Math.round(p.loop_lag_p99_ms * 100) / 100,
    pool: p.pool_size === null ? null : { size: p.pool_size, inUse: p.pool_in_use ?? 0, waiting: p.pool_waiting ?? 0 },
    runningJobs: Object.values(p.running_jobs ?? {}).reduce((a, b) => a + b, 0),
  }));
}

/** The database: its own figures, and the pools of the live processes (processesPanel) added up. */
export function databasePanel(
  engine: Db['engine'],
  figures: Awaited<ReturnType<typeof repo.databaseFigures>>,
  live: Overview['processes'],
): Overview['database'] {
  return {
    engine,
    sizeBytes: figures.size_bytes,
    poolSize: live.reduce((a, p) => a + (p.pool?.size ?? 0), 0),
    poolInUse: live.reduce((a, p) => a + (p.pool?.inUse ?? 0), 0),
    poolWaiting: live.reduce((a, p) => a + (p.pool?.waiting ?? 0), 0),
    connections: figures.connections,
    activeConnections: figures.active,
  };
}

export function auditPanel(run: repo.AuditRunRow | undefined): Overview['audit'] {
  return run
    ? {
        ranAt: run.ran_at.toISOString(),
        ok: run.ok,
        checks: run.checks.map((c) => ({ name: c.name, ok: c.ok, violations: c.violations.length })),
      }
    : null;
}
