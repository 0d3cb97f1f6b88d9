// The operations overview: the figures every process flushed (telemetry.ts), the order sums the
// outbox reader keeps (order-stats.ts) and the current state of queues, webhooks, processes and
// the database, put together for one window: the reads here, one builder per panel in panels.ts.
// Also the audit runs that are recorded.
import type { Db } from '../../platform/db.ts';
import { runAudit, type AuditOptions } from '../ledger/audit.ts';
import { outageUntil } from '../payments/providers/outage.ts';
import {
  auditPanel,
  chargesPanel,
  countersOf,
  databasePanel,
  ordersPanel,
  processesPanel,
  queuesPanel,
  refundsPanel,
  trafficPanel,
  webhooksPanel,
  windowOf,
  windowPanel,
} from './panels.ts';
import * as repo from './repo.ts';
import type { Overview } from './schemas.ts';

export interface OverviewOptions {
  windowSeconds: number;
  /** How fresh an event-stream connection row must be to count as open. */
  streamFreshSeconds: number;
  /** Whether the sandbox processor is the provider (its outage is shown). */
  sandbox: boolean;
  now?: Date;
}

export async function overview(db: Db, options: OverviewOptions): Promise<Overview> {
  const window = windowOf(options.now ?? new Date(), options.windowSeconds);
  const [
    counterRows,
    histogram,
    orderRows,
    queues,
    processRows,
    endpointCounts,
    problems,
    database,
    streams,
    audit,
    outage,
  ] = await Promise.all([
    repo.counterBuckets(db, window.from, window.step),
    repo.latencyHistogram(db, window.from),
    repo.orderBuckets(db, window.from, window.step),
    repo.queueCounts(db),
    repo.liveProcesses(db),
    repo.webhookEndpointCounts(db),
    repo.webhookProblems(db, 20),
    repo.databaseFigures(db, db.engine),
    repo.openEventStreams(db, options.streamFreshSeconds),
    repo.lastAuditRun(db),
    options.sandbox ? outageUntil(db) : Promise.resolve(null),
  ]);
  const counters = countersOf(counterRows, window);
  const processes = processesPanel(processRows);
  return {
    window: windowPanel(window),
    traffic: trafficPanel(counters, histogram, window.step),
    orders: ordersPanel(orderRows, window),
    charges: chargesPanel(counters, window.step),
    refunds: refundsPanel(counters),
    queues: queuesPanel(queues, processRows),
    webhooks: webhooksPanel(counters, window.step, endpointCounts, problems),
    processes,
    database: databasePanel(db.engine, database, processes),
    eventStreams: streams,
    audit: auditPanel(audit),
    sandbox: options.sandbox ? { outageUntil: outage?.toISOString() ?? null } : null,
  };
}

export function auditRunView(run: repo.AuditRunRow) {
  return {
    id: run.id,
    ranAt: run.ran_at.toISOString(),
    ok: run.ok,
    durationMs: run.duration_ms,
    checks: run.checks.map((c) => ({
      name: c.name,
      ok: c.ok,
      ...(c.skipped ? { skipped: c.skipped } : {}),
      violations: c.violations as Record<string, unknown>[],
    })),
  };
}

/** Runs the audit and records its verdict (ops_audit_runs), for the overview and /metrics/system. */
export async function runAndRecordAudit(db: Db, options: AuditOptions): Promise<repo.AuditRunRow> {
  const started = performance.now();
  const result = await runAudit(db, options);
  return repo.insertAuditRun(db, {
    ok: result.ok,
    checks: result.checks,
    durationMs: Math.round(performance.now() - started),
  });
}
