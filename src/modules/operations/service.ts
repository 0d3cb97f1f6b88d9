// The operations overview: the figures every process flushed (telemetry.ts), the order sums the
// outbox reader keeps (order-stats.ts) and the current state of queues, webhooks, processes and
// the database, put together for one window. Also the audit runs that are recorded.
import type { Db } from '../../platform/db.ts';
import { latencyBucketsMs } from '../../platform/metrics.ts';
import { deadLetterQueueOf } from '../../platform/queue.ts';
import { runAudit, type AuditOptions } from '../ledger/audit.ts';
import { chargeQueue } from '../payments/outbox.ts';
import { outageUntil } from '../payments/providers/outage.ts';
import { deliverQueue } from '../webhooks/service.ts';
import * as repo from './repo.ts';
import type { Overview } from './schemas.ts';

/** Point widths the series use: the smallest that keeps a window to about 150 points. */
const steps = [10, 30, 60, 120, 300, 600, 900, 1800];

export function stepFor(windowSeconds: number): number {
  return steps.find((s) => windowSeconds / s <= 150) ?? steps[steps.length - 1]!;
}

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

function moneyList(byCurrency: Map<string, number>) {
  return [...byCurrency].filter(([, amount]) => amount !== 0).sort(([a], [b]) => a.localeCompare(b)).map(([currency, amount]) => ({ currency, amount }));
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '';
  }
}

export interface OverviewOptions {
  windowSeconds: number;
  /** How fresh an event-stream connection row must be to count as open. */
  streamFreshSeconds: number;
  /** Whether the sandbox processor is the provider (its outage is shown). */
  sandbox: boolean;
  now?: Date;
}

export async function overview(db: Db, options: OverviewOptions): Promise<Overview> {
  const now = options.now ?? new Date();
  const step = stepFor(options.windowSeconds);
  const stepMs = step * 1000;
  // Points start on multiples of the step; the one still filling (it would dip) is left out of the
  // series, not out of the totals.
  const firstPoint = Math.floor((now.getTime() - options.windowSeconds * 1000) / stepMs) * stepMs;
  const lastPoint = Math.floor(now.getTime() / stepMs) * stepMs - stepMs;
  const times: number[] = [];
  for (let t = firstPoint; t <= lastPoint; t += stepMs) times.push(t / 1000);
  const from = new Date(firstPoint);
  const indexOf = (bucket: Date) => Math.round((bucket.getTime() - firstPoint) / stepMs);
  const zeros = () => times.map(() => 0);

  const [counters, histogram, orderRows, queues, processes, endpointCounts, problems, database, streams, audit, outage] = await Promise.all([
    repo.counterBuckets(db, from, step),
    repo.latencyHistogram(db, from),
    repo.orderBuckets(db, from, step),
    repo.queueCounts(db),
    repo.liveProcesses(db),
    repo.webhookEndpointCounts(db),
    repo.webhookProblems(db, 20),
    repo.databaseFigures(db, db.engine),
    repo.openEventStreams(db, options.streamFreshSeconds),
    repo.lastAuditRun(db),
    options.sandbox ? outageUntil(db) : Promise.resolve(null),
  ]);

  // Counters: per metric and label, a series (per bucket) and a total over the window.
  const series = new Map<string, number[]>();
  const total = new Map<string, number>();
  const sums = new Map<string, number>();
  for (const row of counters) {
    total.set(row.key, (total.get(row.key) ?? 0) + row.count);
    sums.set(row.key, (sums.get(row.key) ?? 0) + row.sum);
    const i = indexOf(row.bucket);
    if (i < 0 || i >= times.length) continue;
    let s = series.get(row.key);
    if (!s) series.set(row.key, (s = zeros()));
    s[i]! += row.count;
  }
  /** Adds up the series (or totals) of every key that starts with one of the prefixes. */
  const seriesOf = (prefixes: string[], per: number) => {
    const out = zeros();
    for (const [key, s] of series) if (prefixes.some((p) => key.startsWith(p))) s.forEach((v, i) => { out[i]! += v; });
    return out.map((v) => Math.round((v / per) * 1000) / 1000);
  };
  const totalOf = (prefixes: string[]) => {
    let n = 0;
    for (const [key, v] of total) if (prefixes.some((p) => key.startsWith(p))) n += v;
    return n;
  };
  const amountsOf = (prefix: string) => {
    const byCurrency = new Map<string, number>();
    for (const [key, v] of sums) {
      if (!key.startsWith(prefix)) continue;
      const currency = key.slice(prefix.length);
      byCurrency.set(currency, (byCurrency.get(currency) ?? 0) + v);
    }
    return moneyList(byCurrency);
  };

  const requests = totalOf(['http.requests\t']);
  const errors5xx = totalOf(['http.requests\t5xx']);
  const errors4xx = totalOf(['http.requests\t4xx']);
  const topErrors = [...total].filter(([key]) => key.startsWith('http.errors\t'))
    .map(([key, count]) => {
      const [, route = '', status = '0', code = ''] = key.split('\t');
      return { route, status: Number(status), code, count };
    })
    .sort((a, b) => b.count - a.count || a.route.localeCompare(b.route))
    .slice(0, 8);
  // Load shedding's refusals (src/platform/load-shedding.ts counts them as http.shed, reason and class).
  const shed = [...total].filter(([key]) => key.startsWith('http.shed\t'))
    .map(([key, count]) => {
      const [, reason = '', priority = ''] = key.split('\t');
      return { reason, priority, count };
    })
    .sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason));

  // Orders, from the outbox sums.
  const orderSeries = new Map<string, number[]>();
  const orderTotals = new Map<string, number>();
  const paid = new Map<string, number>();
  for (const row of orderRows) {
    orderTotals.set(row.type, (orderTotals.get(row.type) ?? 0) + row.count);
    if (row.type === 'order.paid') paid.set(row.currency, (paid.get(row.currency) ?? 0) + row.amount);
    const i = indexOf(row.bucket);
    if (i < 0 || i >= times.length) continue;
    let s = orderSeries.get(row.type);
    if (!s) orderSeries.set(row.type, (s = zeros()));
    s[i]! += row.count;
  }
  const perMinute = (type: string) => (orderSeries.get(type) ?? zeros()).map((v) => Math.round((v * 60 / step) * 1000) / 1000);
  const minutes = step / 60;

  // Queues: waiting and retrying from the job table, running from the live processes.
  const running = new Map<string, number>();
  for (const p of processes) for (const [queue, n] of Object.entries(p.running_jobs ?? {})) running.set(queue, (running.get(queue) ?? 0) + n);
  const byName = new Map(queues.map((q) => [q.name, q]));
  const queueList = queues.filter((q) => !q.name.endsWith('.dead-letter')).map((q) => ({
    name: q.name,
    waiting: q.waiting,
    running: running.get(q.name) ?? 0,
    retrying: q.retrying,
    deadLetters: byName.get(deadLetterQueueOf(q.name))?.waiting ?? 0,
    lagSeconds: Math.max(0, Math.round((q.lag_seconds ?? 0) * 10) / 10),
  }));

  const live = processes.map((p) => ({
    id: p.id, host: p.host, pid: p.pid, version: p.version,
    roles: [...(p.serves_http ? ['api' as const] : []), ...(p.runs_workers ? ['worker' as const] : [])],
    startedAt: p.started_at.toISOString(), seenAt: p.seen_at.toISOString(),
    rssBytes: p.rss_bytes, heapUsedBytes: p.heap_used_bytes, eventLoopLagMs: Math.round(p.loop_lag_p99_ms * 100) / 100,
    pool: p.pool_size === null ? null : { size: p.pool_size, inUse: p.pool_in_use ?? 0, waiting: p.pool_waiting ?? 0 },
    runningJobs: Object.values(p.running_jobs ?? {}).reduce((a, b) => a + b, 0),
  }));

  const chargeOutcome = (outcome: string) => `charges\t${outcome}\t`;
  const chargeDead = `jobs\t${chargeQueue}\tdead_lettered`;
  return {
    window: { seconds: options.windowSeconds, stepSeconds: step, from: from.toISOString(), to: now.toISOString(), times },
    traffic: {
      requestsPerSecond: seriesOf(['http.requests\t'], step),
      errors5xxPerSecond: seriesOf(['http.requests\t5xx'], step),
      errors4xxPerSecond: seriesOf(['http.requests\t4xx'], step),
      requests, errors5xx, errors4xx,
      errorRate5xx: requests > 0 ? errors5xx / requests : 0,
      errorRate4xx: requests > 0 ? errors4xx / requests : 0,
      latencyMs: { p50: quantileMs(histogram, 0.5), p95: quantileMs(histogram, 0.95), p99: quantileMs(histogram, 0.99) },
      topErrors,
      shed,
    },
    orders: {
      placedPerMinute: perMinute('order.created'),
      paidPerMinute: perMinute('order.paid'),
      paymentFailedPerMinute: perMinute('order.payment_failed'),
      cancelledPerMinute: perMinute('order.cancelled'),
      placed: orderTotals.get('order.created') ?? 0,
      paid: orderTotals.get('order.paid') ?? 0,
      paymentFailed: orderTotals.get('order.payment_failed') ?? 0,
      cancelled: orderTotals.get('order.cancelled') ?? 0,
      paidAmounts: moneyList(paid),
    },
    charges: {
      succeededPerMinute: seriesOf([chargeOutcome('succeeded')], minutes),
      declinedPerMinute: seriesOf([chargeOutcome('declined')], minutes),
      retriedPerMinute: seriesOf([chargeOutcome('retryable'), chargeOutcome('error')], minutes),
      failedPerMinute: seriesOf([chargeDead], minutes),
      succeeded: totalOf([chargeOutcome('succeeded')]),
      declined: totalOf([chargeOutcome('declined')]),
      retried: totalOf([chargeOutcome('retryable'), chargeOutcome('error')]),
      failed: totalOf([chargeDead]),
    },
    refunds: {
      succeeded: totalOf(['refunds\tsucceeded\t']),
      declined: totalOf(['refunds\tdeclined\t']),
      retried: totalOf(['refunds\tretryable\t', 'refunds\terror\t']),
      amounts: amountsOf('refunds\tsucceeded\t'),
    },
    queues: queueList,
    webhooks: {
      succeededPerMinute: seriesOf([`jobs\t${deliverQueue}\tcompleted`], minutes),
      failedPerMinute: seriesOf([`jobs\t${deliverQueue}\tfailed`, `jobs\t${deliverQueue}\tdead_lettered`], minutes),
      succeeded: totalOf([`jobs\t${deliverQueue}\tcompleted`]),
      failed: totalOf([`jobs\t${deliverQueue}\tfailed`]),
      deadLettered: totalOf([`jobs\t${deliverQueue}\tdead_lettered`]),
      endpoints: endpointCounts.total, failingEndpoints: endpointCounts.failing, disabledEndpoints: endpointCounts.disabled,
      problems: problems.map((p) => ({
        id: p.id, host: hostOf(p.url), enabled: p.enabled,
        failingSince: p.failing_since?.toISOString() ?? null,
        disabledReason: p.disabled_reason,
        lastError: p.last_error ?? (p.last_status !== null ? `HTTP ${p.last_status}` : null),
        lastAttemptAt: p.last_attempt_at?.toISOString() ?? null,
      })),
    },
    processes: live,
    database: {
      engine: db.engine,
      sizeBytes: database.size_bytes,
      poolSize: live.reduce((a, p) => a + (p.pool?.size ?? 0), 0),
      poolInUse: live.reduce((a, p) => a + (p.pool?.inUse ?? 0), 0),
      poolWaiting: live.reduce((a, p) => a + (p.pool?.waiting ?? 0), 0),
      connections: database.connections,
      activeConnections: database.active,
    },
    eventStreams: streams,
    audit: audit ? {
      ranAt: audit.ran_at.toISOString(), ok: audit.ok,
      checks: audit.checks.map((c) => ({ name: c.name, ok: c.ok, violations: c.violations.length })),
    } : null,
    sandbox: options.sandbox ? { outageUntil: outage?.toISOString() ?? null } : null,
  };
}

export function auditRunView(run: repo.AuditRunRow) {
  return {
    id: run.id, ranAt: run.ran_at.toISOString(), ok: run.ok, durationMs: run.duration_ms,
    checks: run.checks.map((c) => ({ name: c.name, ok: c.ok, ...(c.skipped ? { skipped: c.skipped } : {}), violations: c.violations as Record<string, unknown>[] })),
  };
}

/** Runs the audit and records its verdict (ops_audit_runs), for the overview and /metrics/system. */
export async function runAndRecordAudit(db: Db, options: AuditOptions): Promise<repo.AuditRunRow> {
  const started = performance.now();
  const result = await runAudit(db, options);
  return repo.insertAuditRun(db, { ok: result.ok, checks: result.checks, durationMs: Math.round(performance.now() - started) });
}
