// The operations page, the console's landing page: the whole system, live. One request
// (GET /v1/admin/operations) every few seconds feeds every figure; admins also see the dead
// letters (and send them back), run the audit and read the ledger's balances.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, type AuditRun, type LedgerBalance, type Overview } from '../api.ts';
import type { PageProps } from '../page.ts';
import { Chart } from '../components/Chart.tsx';
import { ConfirmAction } from '../components/ConfirmAction.tsx';
import { DataTable } from '../components/DataTable.tsx';
import { DeadLetters, useDeadLetters, type Retried } from '../components/DeadLetters.tsx';
import { AdminOnly, Badge, ErrorNote, Note, Section, Stat } from '../components/ui.tsx';
import * as f from '../format.ts';

const windows = [
  { seconds: 300, label: 'Last 5 minutes' },
  { seconds: 900, label: 'Last 15 minutes' },
  { seconds: 3600, label: 'Last hour' },
  { seconds: 6 * 3600, label: 'Last 6 hours' },
  { seconds: 24 * 3600, label: 'Last 24 hours' },
];

/** Refresh often on short windows, less on long ones (each refresh reads the whole window). */
function refreshMs(windowSeconds: number): number {
  return windowSeconds <= 3600 ? 5_000 : windowSeconds <= 6 * 3600 ? 15_000 : 30_000;
}

const colors = {
  blue: '#1d4ed8',
  red: '#b42318',
  amber: '#b45309',
  green: '#15803d',
  violet: '#6d28d9',
  grey: '#4b5563',
};

function last(values: number[]): number {
  return values.length > 0 ? values[values.length - 1]! : 0;
}

/** Fetches the overview now and then every interval while the page is visible and not paused. */
function useLiveOverview(windowSeconds: number, paused: boolean) {
  const [data, setData] = useState<Overview | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [updatedAt, setUpdatedAt] = useState(0);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (paused) return;
    let stopped = false;
    let timer: number | undefined;
    const controller = new AbortController();
    const load = async () => {
      window.clearTimeout(timer);
      if (document.visibilityState === 'hidden') return; // resumed by visibilitychange
      try {
        const overview = await api.operationsOverview({ query: { window: windowSeconds }, signal: controller.signal });
        if (stopped) return;
        setData(overview);
        setError(null);
        setUpdatedAt(Date.now());
      } catch (err) {
        if (stopped) return;
        setError(err);
      }
      if (!stopped) timer = window.setTimeout(() => void load(), refreshMs(windowSeconds));
    };
    const onVisibility = () => {
      if (document.visibilityState === 'visible') void load();
    };
    document.addEventListener('visibilitychange', onVisibility);
    void load(); // load shows its own failure (setError) and schedules the next one
    return () => {
      stopped = true;
      controller.abort();
      window.clearTimeout(timer);
      document.removeEventListener('visibilitychange', onVisibility);
    };
  }, [windowSeconds, paused, tick]);
  return { data, error, updatedAt, refresh: () => setTick((t) => t + 1) };
}

function UpdatedAgo({ at, paused }: { at: number; paused: boolean }) {
  const [, setNow] = useState(0);
  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, []);
  if (paused) return <span class="live paused">Paused</span>;
  if (at === 0) return <span class="live">Loading…</span>;
  return (
    <span class="live">
      <span class="dot" aria-hidden="true" />
      Live · updated {f.seconds((Date.now() - at) / 1000)} ago
    </span>
  );
}

export function OperationsPage({ session }: PageProps) {
  const admin = session.user.role === 'admin';
  const [windowSeconds, setWindowSeconds] = useState(
    () => Number(new URLSearchParams(location.search).get('window')) || 900,
  );
  const [paused, setPaused] = useState(false);
  const live = useLiveOverview(windowSeconds, paused);
  const data = live.data;

  const chooseWindow = (seconds: number) => {
    setWindowSeconds(seconds);
    const url = new URL(location.href);
    url.searchParams.set('window', String(seconds));
    history.replaceState(null, '', url);
  };

  return (
    <>
      <div class="page-head">
        <h1>Operations</h1>
        <div class="controls">
          <label for="window">Window</label>
          <select id="window" value={windowSeconds} onChange={(e) => chooseWindow(Number(e.currentTarget.value))}>
            {windows.map((w) => (
              <option key={w.seconds} value={w.seconds}>
                {w.label}
              </option>
            ))}
          </select>
          <button type="button" class="secondary" aria-pressed={paused} onClick={() => setPaused(!paused)}>
            {paused ? 'Resume' : 'Pause'}
          </button>
          <UpdatedAgo at={live.updatedAt} paused={paused} />
        </div>
      </div>
      <ErrorNote error={live.error} />
      {data ? (
        <Dashboard data={data} admin={admin} refresh={live.refresh} />
      ) : live.error ? null : (
        <p role="status">Loading the figures…</p>
      )}
    </>
  );
}

function Dashboard({ data, admin, refresh }: { data: Overview; admin: boolean; refresh: () => void }) {
  const deadLetters = data.queues.reduce((a, q) => a + q.deadLetters, 0);
  const failingNow =
    last(data.charges.retriedPerMinute) + last(data.charges.failedPerMinute) + last(data.webhooks.failedPerMinute);
  return (
    <>
      {data.sandbox?.outageUntil ? (
        <Note tone="warn">
          The sandbox processor is in an outage (a drill) until {f.time(data.sandbox.outageUntil)}: charges fail for now
          and are retried.
        </Note>
      ) : null}
      <div class="stats" aria-label="Headline figures" role="group">
        <Stat
          testId="stat-requests"
          label="Requests / s"
          value={f.rate(last(data.traffic.requestsPerSecond))}
          hint={`${f.count(data.traffic.requests)} in the window`}
        />
        <Stat
          testId="stat-5xx"
          label="5xx rate"
          value={f.percent(data.traffic.errorRate5xx)}
          tone={data.traffic.errors5xx > 0 ? 'bad' : 'ok'}
          hint={`${f.count(data.traffic.errors5xx)} answers`}
        />
        <Stat
          label="4xx rate"
          value={f.percent(data.traffic.errorRate4xx)}
          tone={data.traffic.errorRate4xx > 0.2 ? 'warn' : 'neutral'}
          hint={`${f.count(data.traffic.errors4xx)} answers`}
        />
        <Stat
          label="Latency p95"
          value={f.ms(data.traffic.latencyMs.p95)}
          hint={`p50 ${f.ms(data.traffic.latencyMs.p50)} · p99 ${f.ms(data.traffic.latencyMs.p99)}`}
        />
        <Stat
          testId="stat-orders"
          label="Orders placed"
          value={f.count(data.orders.placed)}
          hint={`${f.count(data.orders.paid)} paid · ${f.count(data.orders.paymentFailed)} failed`}
        />
        <Stat
          testId="stat-failing"
          label="Failing now / min"
          value={f.rate(failingNow)}
          tone={failingNow > 0 ? 'bad' : 'ok'}
          hint="charge and webhook attempts"
        />
        <Stat
          testId="stat-dead"
          label="Dead letters"
          value={f.count(deadLetters)}
          tone={deadLetters > 0 ? 'bad' : 'ok'}
          hint={deadLetters > 0 ? 'jobs out of attempts' : 'none'}
        />
        <Stat
          label="Audit"
          value={data.audit ? (data.audit.ok ? 'Clean' : 'Violations') : 'Not run'}
          tone={data.audit ? (data.audit.ok ? 'ok' : 'bad') : 'neutral'}
          hint={data.audit ? f.ago(data.audit.ranAt) : 'run it below'}
        />
      </div>

      <Traffic data={data} />
      <Orders data={data} />
      <Queues data={data} admin={admin} refresh={refresh} />
      <Webhooks data={data} />
      <Audit data={data} admin={admin} />
      <Processes data={data} />
    </>
  );
}

/** What each reason of load shedding means (src/platform/admission.ts). */
const shedReasons: Record<string, string> = {
  predicted: 'Refused on arrival: the queue ahead would take longer than its wait target',
  wait: 'Waited in the queue past its wait target',
  queue_full: "The queue's safety cap, or made room for a higher priority",
  event_loop: 'The event loop was late (normal and low priority only)',
};

function Traffic({ data }: { data: Overview }) {
  const t = data.traffic;
  const series = useMemo(
    () => [
      { label: 'Requests/s', values: t.requestsPerSecond, color: colors.blue },
      { label: '5xx/s', values: t.errors5xxPerSecond, color: colors.red },
      { label: '4xx/s', values: t.errors4xxPerSecond, color: colors.amber, dash: [6, 4] },
    ],
    [data],
  );
  return (
    <Section id="traffic" title="Traffic and errors">
      <div class="grid-2">
        <Chart title="Requests and errors per second" times={data.window.times} series={series} format={f.rate} />
        <DataTable
          caption="Routes with the most errors"
          columns={[
            { header: 'Route', cell: (e) => <code>{e.route}</code> },
            { header: 'Status', cell: (e) => <Badge tone={e.status >= 500 ? 'bad' : 'warn'}>{e.status}</Badge> },
            { header: 'Problem', cell: (e) => e.code || '–' },
            { header: 'Count', numeric: true, cell: (e) => f.count(e.count) },
          ]}
          rows={t.topErrors}
          keyOf={(e) => `${e.route} ${e.status} ${e.code}`}
          empty="No errors in the window."
        />
        <DataTable
          caption="Shed under load (503), by reason and priority"
          columns={[
            { header: 'Reason', cell: (s) => <span title={shedReasons[s.reason] ?? ''}>{s.reason}</span> },
            {
              header: 'Priority',
              cell: (s) => <Badge tone={s.priority === 'critical' ? 'bad' : 'warn'}>{s.priority}</Badge>,
            },
            { header: 'Count', numeric: true, cell: (s) => f.count(s.count) },
          ]}
          rows={t.shed}
          keyOf={(s) => `${s.reason} ${s.priority}`}
          empty="Nothing shed in the window."
        />
      </div>
    </Section>
  );
}

function Orders({ data }: { data: Overview }) {
  const o = data.orders;
  const c = data.charges;
  const orderSeries = useMemo(
    () => [
      { label: 'Placed', values: o.placedPerMinute, color: colors.blue },
      { label: 'Paid', values: o.paidPerMinute, color: colors.green },
      { label: 'Payment failed', values: o.paymentFailedPerMinute, color: colors.red },
      { label: 'Cancelled', values: o.cancelledPerMinute, color: colors.grey, dash: [6, 4] },
    ],
    [data],
  );
  const chargeSeries = useMemo(
    () => [
      { label: 'Succeeded', values: c.succeededPerMinute, color: colors.green },
      { label: 'Declined', values: c.declinedPerMinute, color: colors.violet },
      { label: 'Retried', values: c.retriedPerMinute, color: colors.amber },
      { label: 'Failed for good', values: c.failedPerMinute, color: colors.red, dash: [6, 4] },
    ],
    [data],
  );
  const money = (list: { amount: number; currency: string }[]) =>
    list.length === 0 ? '–' : list.map((m) => f.money(m.amount, m.currency)).join(' · ');
  return (
    <Section id="orders" title="Orders and money">
      <div class="grid-2">
        <Chart title="Orders per minute" times={data.window.times} series={orderSeries} format={f.rate} />
        <Chart title="Charges per minute, by outcome" times={data.window.times} series={chargeSeries} format={f.rate} />
      </div>
      <div class="stats">
        <Stat label="Paid" value={f.count(o.paid)} hint={money(o.paidAmounts)} testId="stat-paid" />
        <Stat label="Payment failed" value={f.count(o.paymentFailed)} tone={o.paymentFailed > 0 ? 'warn' : 'neutral'} />
        <Stat label="Cancelled" value={f.count(o.cancelled)} />
        <Stat
          label="Charges"
          value={`${f.count(c.succeeded)} ok`}
          hint={`${f.count(c.declined)} declined · ${f.count(c.retried)} retried · ${f.count(c.failed)} failed for good`}
          tone={c.failed > 0 ? 'bad' : 'neutral'}
        />
        <Stat
          label="Refunds"
          value={f.count(data.refunds.succeeded)}
          hint={`${money(data.refunds.amounts)}${data.refunds.declined ? ` · ${data.refunds.declined} declined` : ''}`}
          tone={data.refunds.declined > 0 ? 'bad' : 'neutral'}
        />
      </div>
    </Section>
  );
}

function Queues({ data, admin, refresh }: { data: Overview; admin: boolean; refresh: () => void }) {
  const deadLetters = data.queues.reduce((a, q) => a + q.deadLetters, 0);
  const list = useDeadLetters(undefined, admin);
  // The list follows the count the live overview shows.
  const seen = useRef(deadLetters);
  useEffect(() => {
    if (admin && seen.current !== deadLetters) void list.pages.reload();
    seen.current = deadLetters;
  }, [deadLetters]);
  const sentBack = (items: Retried[]) => {
    list.sentBack(items);
    refresh();
  };

  return (
    <Section id="queues" title="Queues">
      <DataTable
        caption="Jobs per queue"
        columns={[
          { header: 'Queue', cell: (q) => <code>{q.name}</code> },
          { header: 'Waiting', numeric: true, cell: (q) => f.count(q.waiting) },
          { header: 'Running', numeric: true, cell: (q) => f.count(q.running) },
          {
            header: 'Retrying',
            numeric: true,
            cell: (q) => (q.retrying > 0 ? <Badge tone="warn">{f.count(q.retrying)}</Badge> : '0'),
          },
          {
            header: 'Dead letters',
            numeric: true,
            cell: (q) => (q.deadLetters > 0 ? <Badge tone="bad">{f.count(q.deadLetters)}</Badge> : '0'),
          },
          { header: 'Lag', numeric: true, cell: (q) => f.seconds(q.lagSeconds) },
          {
            header: 'Action',
            cell: (q) =>
              q.deadLetters === 0 ? (
                '–'
              ) : !admin ? (
                'admins only'
              ) : (
                <ConfirmAction
                  label="Retry all"
                  accessibleLabel={`Retry all ${q.deadLetters} dead letters of ${q.name}`}
                  tone="secondary"
                  title={`Retry every dead letter of ${q.name}?`}
                  confirmLabel={`Retry ${q.deadLetters}`}
                  run={(idempotencyKey) => api.retryAllFailedJobs({ body: { queue: q.name }, idempotencyKey })}
                  onDone={(r) => sentBack(r.ids.map((newId) => ({ deadId: newId, newId, queue: q.name })))}
                >
                  <p>
                    Each job goes back to <code>{q.name}</code> with the queue's full retry budget. Jobs are idempotent:
                    a retried charge never charges twice.
                  </p>
                </ConfirmAction>
              ),
          },
        ]}
        rows={data.queues}
        keyOf={(q) => q.name}
        empty="No queues."
      />
      <h3>Dead letters</h3>
      {!admin ? (
        <AdminOnly what="Listing and retrying dead letters" />
      ) : (
        <DeadLetters list={list} onSentBack={refresh} />
      )}
    </Section>
  );
}

function Webhooks({ data }: { data: Overview }) {
  const w = data.webhooks;
  const series = useMemo(
    () => [
      { label: 'Delivered', values: w.succeededPerMinute, color: colors.green },
      { label: 'Failed', values: w.failedPerMinute, color: colors.red },
    ],
    [data],
  );
  return (
    <Section id="webhooks" title="Webhooks">
      <div class="grid-2">
        <Chart title="Webhook delivery attempts per minute" times={data.window.times} series={series} format={f.rate} />
        <div>
          <div class="stats">
            <Stat label="Endpoints" value={f.count(w.endpoints)} />
            <Stat
              testId="stat-webhooks-failing"
              label="Failing"
              value={f.count(w.failingEndpoints)}
              tone={w.failingEndpoints > 0 ? 'bad' : 'ok'}
            />
            <Stat
              label="Disabled"
              value={f.count(w.disabledEndpoints)}
              tone={w.disabledEndpoints > 0 ? 'warn' : 'neutral'}
            />
          </div>
          <DataTable
            caption="Endpoints with failing deliveries, and disabled ones"
            columns={[
              {
                header: 'Endpoint',
                cell: (p) => (
                  <>
                    <code>{p.host}</code> <span class="muted">{p.id}</span>
                  </>
                ),
              },
              {
                header: 'State',
                cell: (p) =>
                  p.enabled ? (
                    <Badge tone="bad">failing since {p.failingSince ? f.ago(p.failingSince) : '?'}</Badge>
                  ) : (
                    <Badge tone="warn">disabled</Badge>
                  ),
              },
              {
                header: 'Last error',
                cell: (p) => <span class="error-text">{p.disabledReason ?? p.lastError ?? '–'}</span>,
              },
            ]}
            rows={w.problems}
            keyOf={(p) => p.id}
            empty="Every endpoint is delivering."
          />
        </div>
      </div>
    </Section>
  );
}

type Balances = LedgerBalance[];

function Audit({ data, admin }: { data: Overview; admin: boolean }) {
  const [run, setRun] = useState<AuditRun | null>(null);
  const [balances, setBalances] = useState<Balances | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const loadBalances = () => api.ledgerBalances({}).then((b) => setBalances(b.data), setError);
  // A run recorded elsewhere (the schedule, another operator, the drill) is fetched when the
  // overview shows it, with its violations.
  const latest = data.audit?.ranAt;
  useEffect(() => {
    if (!admin) return;
    // The run's violations are extra detail: the verdict is on the overview already, so a failed fetch leaves it out.
    if (latest) void api.lastAuditRun({}).then(setRun, () => {});
    void loadBalances(); // a failure shows as the panel's error
  }, [admin, latest]);
  const runNow = async () => {
    setBusy(true);
    setError(null);
    try {
      setRun(await api.runAudit({}));
      await loadBalances();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const summary =
    run && (!latest || Date.parse(run.ranAt) >= Date.parse(latest))
      ? run
      : data.audit
        ? {
            ...data.audit,
            checks: data.audit.checks.map((c) => ({
              ...c,
              violations: [] as Record<string, unknown>[],
              count: c.violations,
            })),
          }
        : null;
  return (
    <Section
      id="audit"
      title="Audit and ledger"
      actions={
        admin ? (
          <button type="button" class="primary" disabled={busy} onClick={() => void runNow()}>
            {busy ? 'Running the audit…' : 'Run the audit now'}
          </button>
        ) : null
      }
    >
      <ErrorNote error={error} />
      {!summary ? (
        <Note>The audit has not run yet. The workers run it every 10 minutes{admin ? ', or run it now' : ''}.</Note>
      ) : (
        <>
          <p class="verdict" data-testid="audit-verdict">
            {summary.ok ? <Badge tone="ok">Clean</Badge> : <Badge tone="bad">Violations found</Badge>} Ran{' '}
            {f.ago(summary.ranAt)} ({f.time(summary.ranAt)}).
          </p>
          <ul class="checks">
            {summary.checks.map((c) => {
              const count = 'count' in c ? (c.count as number) : c.violations.length;
              return (
                <li key={c.name}>
                  <Badge tone={c.ok ? 'ok' : 'bad'}>
                    {'skipped' in c && c.skipped
                      ? 'skipped'
                      : c.ok
                        ? 'ok'
                        : `${count} violation${count === 1 ? '' : 's'}`}
                  </Badge>{' '}
                  {c.name}
                  {!c.ok && c.violations.length > 0 ? (
                    <details>
                      <summary>Show the offending rows</summary>
                      <pre>{c.violations.map((v) => JSON.stringify(v)).join('\n')}</pre>
                    </details>
                  ) : null}
                </li>
              );
            })}
          </ul>
        </>
      )}
      {!admin ? (
        <AdminOnly what="Running the audit and reading the ledger" />
      ) : (
        <DataTable
          caption="Ledger balances per account and currency (balance = debits − credits)"
          columns={[
            { header: 'Account', cell: (b) => <code>{b.account}</code> },
            { header: 'Debits', numeric: true, cell: (b) => f.money(b.debits, b.currency) },
            { header: 'Credits', numeric: true, cell: (b) => f.money(b.credits, b.currency) },
            { header: 'Balance', numeric: true, cell: (b) => f.money(b.balance, b.currency) },
          ]}
          rows={balances ?? []}
          keyOf={(b) => `${b.account} ${b.currency}`}
          empty={balances ? 'No money has moved yet.' : 'Loading…'}
        />
      )}
    </Section>
  );
}

function Processes({ data }: { data: Overview }) {
  const db = data.database;
  return (
    <Section id="processes" title="Processes and database">
      <DataTable
        caption={`${data.processes.length} live process${data.processes.length === 1 ? '' : 'es'}`}
        columns={[
          { header: 'Host', cell: (p) => p.host },
          { header: 'PID', numeric: true, cell: (p) => p.pid },
          { header: 'Runs', cell: (p) => p.roles.join(' + ') },
          { header: 'Version', cell: (p) => p.version },
          {
            header: 'Started',
            cell: (p) => (
              <time dateTime={p.startedAt} title={f.time(p.startedAt)}>
                {f.ago(p.startedAt)}
              </time>
            ),
          },
          { header: 'Memory', numeric: true, cell: (p) => f.bytes(p.rssBytes) },
          { header: 'Event-loop lag p99', numeric: true, cell: (p) => f.ms(p.eventLoopLagMs) },
          {
            header: 'Pool in use',
            numeric: true,
            cell: (p) =>
              p.pool
                ? `${p.pool.inUse} / ${p.pool.size}${p.pool.waiting ? ` (+${p.pool.waiting} waiting)` : ''}`
                : 'embedded',
          },
          { header: 'Jobs running', numeric: true, cell: (p) => p.runningJobs },
        ]}
        rows={data.processes}
        keyOf={(p) => p.id}
        empty="No process has reported in the last 20 seconds."
      />
      <div class="stats">
        <Stat
          label="Database"
          value={db.engine === 'postgres' ? 'PostgreSQL' : 'Embedded (PGlite)'}
          hint={f.bytes(db.sizeBytes)}
        />
        <Stat
          label="Pool in use"
          value={db.engine === 'postgres' ? `${db.poolInUse} / ${db.poolSize}` : '1 connection'}
          hint={db.connections !== null ? `${db.connections} sessions, ${db.activeConnections} active` : undefined}
        />
        <Stat
          label="Waiting for a connection"
          value={f.count(db.poolWaiting)}
          tone={db.poolWaiting > 0 ? 'warn' : 'neutral'}
        />
        <Stat label="Live event streams" value={f.count(data.eventStreams)} />
      </div>
    </Section>
  );
}
