// GET /metrics/system: the whole system's domain series in Prometheus text format, read from the
// database, so that every process answers the same figures. /metrics stays per process (this
// process's requests, memory, pool), which Prometheus adds up across processes; the series here
// are already system-wide, so they live at their own path, scraped once (through the load
// balancer), and summing the per-process scrapes never counts them twice. See docs/OPERATIONS.md.
import type { Db } from '../../platform/db.ts';
import { deadLetterQueueOf } from '../../platform/queue.ts';
import { deliverQueue } from '../webhooks/service.ts';
import * as repo from './repo.ts';

type Labels = Record<string, string>;
interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  samples: { labels: Labels; value: number }[];
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export function exposition(families: Family[]): string {
  const lines: string[] = [];
  for (const f of families) {
    lines.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      const labels = Object.entries(s.labels)
        .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
        .join(',');
      lines.push(`${f.name}${labels ? `{${labels}}` : ''} ${Number.isFinite(s.value) ? s.value : 0}`);
    }
  }
  return lines.join('\n') + '\n';
}

/**
 * systemMetrics computed at most once per ttlMs however often it is scraped: scrapes meanwhile,
 * and those that arrive while it is computed, share one answer. A failed computation is not kept.
 * Scraping it is then no lever on the database (ten queries each time, on a route that is never
 * rate limited nor shed), and the figures change no faster: processes flush every 5 s.
 */
export function cachedSystemMetrics(
  db: Db,
  options: { streamFreshSeconds: number; ttlMs: number; now?: () => number },
): () => Promise<string> {
  const now = options.now ?? Date.now;
  let last: { at: number; text: Promise<string> } | undefined;
  return () => {
    const at = now();
    if (last && at - last.at < options.ttlMs) return last.text;
    const entry = { at, text: systemMetrics(db, options) };
    last = entry;
    entry.text.catch(() => {
      if (last === entry) last = undefined;
    });
    return entry.text;
  };
}

async function systemMetrics(db: Db, options: { streamFreshSeconds: number }): Promise<string> {
  const [totals, queues, processes, endpoints, streams, audit] = await Promise.all([
    repo.totals(db),
    repo.queueCounts(db),
    repo.liveProcesses(db),
    repo.webhookEndpointCounts(db),
    repo.openEventStreams(db, options.streamFreshSeconds),
    repo.lastAuditRun(db),
  ]);
  const split = (label: string) => label.split('\t');
  const of = (metric: string) => totals.filter((t) => t.metric === metric);

  const orders = of('orders').map((t) => {
    const [event = '', currency = ''] = split(t.label);
    return { event: event.replace(/^order\./, ''), currency, count: t.count, sum: t.sum };
  });
  const money = (metric: string) =>
    of(metric).map((t) => {
      const [outcome = '', currency = ''] = split(t.label);
      return { outcome, currency, count: t.count, sum: t.sum };
    });
  const charges = money('charges');
  const refunds = money('refunds');
  const jobs = of('jobs').map((t) => {
    const [queue = '', outcome = ''] = split(t.label);
    return { queue, outcome, count: t.count };
  });

  const running = new Map<string, number>();
  for (const p of processes)
    for (const [queue, n] of Object.entries(p.running_jobs ?? {})) running.set(queue, (running.get(queue) ?? 0) + n);
  const byName = new Map(queues.map((q) => [q.name, q]));
  const workQueues = queues.filter((q) => !q.name.endsWith('.dead-letter'));

  const families: Family[] = [
    {
      name: 'engine_room_orders_total',
      type: 'counter',
      help: 'Order events committed, by event (created, paid, payment_failed, cancelled) and currency',
      samples: orders.map((o) => ({ labels: { event: o.event, currency: o.currency }, value: o.count })),
    },
    {
      name: 'engine_room_orders_amount_minor_units_total',
      type: 'counter',
      help: 'Sum of the totals of those orders, in minor units of the currency',
      samples: orders.map((o) => ({ labels: { event: o.event, currency: o.currency }, value: o.sum })),
    },
    {
      name: 'engine_room_charges_total',
      type: 'counter',
      help: 'Answers of the payment processor to charge requests, by outcome (succeeded, declined, retryable, error) and currency',
      samples: charges.map((c) => ({ labels: { outcome: c.outcome, currency: c.currency }, value: c.count })),
    },
    {
      name: 'engine_room_charges_amount_minor_units_total',
      type: 'counter',
      help: 'Amounts of those charge requests, in minor units',
      samples: charges.map((c) => ({ labels: { outcome: c.outcome, currency: c.currency }, value: c.sum })),
    },
    {
      name: 'engine_room_refunds_total',
      type: 'counter',
      help: 'Answers of the payment processor to refund requests, by outcome and currency',
      samples: refunds.map((c) => ({ labels: { outcome: c.outcome, currency: c.currency }, value: c.count })),
    },
    {
      name: 'engine_room_refunds_amount_minor_units_total',
      type: 'counter',
      help: 'Amounts of those refund requests, in minor units',
      samples: refunds.map((c) => ({ labels: { outcome: c.outcome, currency: c.currency }, value: c.sum })),
    },
    {
      name: 'engine_room_jobs_total',
      type: 'counter',
      help: 'Job attempts finished, by queue and outcome (completed, failed: will be retried, dead_lettered: out of attempts)',
      samples: jobs.map((j) => ({ labels: { queue: j.queue, outcome: j.outcome }, value: j.count })),
    },
    {
      name: 'engine_room_webhook_deliveries_total',
      type: 'counter',
      help: 'Webhook delivery attempts, by outcome (succeeded, failed: will be retried, dead_lettered: out of attempts)',
      samples: jobs
        .filter((j) => j.queue === deliverQueue)
        .map((j) => ({ labels: { outcome: j.outcome === 'completed' ? 'succeeded' : j.outcome }, value: j.count })),
    },
    {
      name: 'engine_room_jobs',
      type: 'gauge',
      help: 'Jobs now, by queue and state (waiting, retrying: waiting for a retry, running, dead_lettered)',
      samples: workQueues.flatMap((q) => [
        { labels: { queue: q.name, state: 'waiting' }, value: q.waiting },
        { labels: { queue: q.name, state: 'retrying' }, value: q.retrying },
        { labels: { queue: q.name, state: 'running' }, value: running.get(q.name) ?? 0 },
        {
          labels: { queue: q.name, state: 'dead_lettered' },
          value: byName.get(deadLetterQueueOf(q.name))?.waiting ?? 0,
        },
      ]),
    },
    {
      name: 'engine_room_job_lag_seconds',
      type: 'gauge',
      help: 'Age of the oldest job of the queue that may run now (0 when none waits)',
      samples: workQueues.map((q) => ({ labels: { queue: q.name }, value: Math.max(0, q.lag_seconds ?? 0) })),
    },
    {
      name: 'engine_room_webhook_endpoints',
      type: 'gauge',
      help: 'Webhook endpoints, by state (healthy, failing: deliveries failing now, disabled)',
      samples: [
        { labels: { state: 'healthy' }, value: endpoints.total - endpoints.failing - endpoints.disabled },
        { labels: { state: 'failing' }, value: endpoints.failing },
        { labels: { state: 'disabled' }, value: endpoints.disabled },
      ],
    },
    {
      name: 'engine_room_event_streams_open',
      type: 'gauge',
      help: 'Live /v1/events streams open, all processes',
      samples: [{ labels: {}, value: streams }],
    },
    {
      name: 'engine_room_processes',
      type: 'gauge',
      help: 'Live Engine Room processes, by role (api, worker; an inline start is both)',
      samples: [
        { labels: { role: 'api' }, value: processes.filter((p) => p.serves_http).length },
        { labels: { role: 'worker' }, value: processes.filter((p) => p.runs_workers).length },
      ],
    },
    {
      name: 'engine_room_audit_violations',
      type: 'gauge',
      help: 'Violations found by the latest audit run, by check (at most 20 are counted per check)',
      samples: (audit?.checks ?? []).map((c) => ({ labels: { check: c.name }, value: c.violations.length })),
    },
    {
      name: 'engine_room_audit_ok',
      type: 'gauge',
      help: '1 when the latest audit run passed, 0 when it failed (absent before the first run)',
      samples: audit ? [{ labels: {}, value: audit.ok ? 1 : 0 }] : [],
    },
    {
      name: 'engine_room_audit_last_run_timestamp_seconds',
      type: 'gauge',
      help: 'When the latest audit run happened, in Unix seconds',
      samples: audit ? [{ labels: {}, value: Math.floor(audit.ran_at.getTime() / 1000) }] : [],
    },
  ];
  return exposition(families);
}
