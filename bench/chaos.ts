// npm run chaos: Engine Room as several processes on one PostgreSQL (API processes with
// WORKERS=off, and worker processes), under load from clients that retry with the same
// Idempotency-Key as real clients do, while a random process is SIGKILLed every few seconds and
// started again, every database session is cut now and then (pg_terminate_backend, our database
// only), and PostgreSQL itself is restarted once. Then it lets the workers drain and checks
// the promises: every acknowledged order exists, no order exists that no client asked for, every
// paid order was charged exactly once, stock is conserved and never went negative, the ledger
// balances, the audit passes, and no process died on its own. Exit status 1 on any violation.
//
//   npm run chaos -- --help
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { openPostgres, type Db } from '../src/platform/db.ts';
import { migrate } from '../src/platform/migrate.ts';
import { stockDiscrepancies } from '../src/modules/catalog/inventory.ts';
import { readOutcomes } from '../src/platform/idempotency.ts';
import {
  createScratch,
  defaultDatabaseUrl,
  freePort,
  startEngineProcess,
  withClient,
  type EngineProcess,
  type EngineSpec,
  type Scratch,
} from './lib/engine.ts';
import { analyzeSeeded, adminLogin, hotSku, seedAdmin, seedBySql, type Seeded } from './lib/seed.ts';
import { httpClient, jsonOf, type HttpClient, type Reply } from './lib/http.ts';
import { fmtInt, fmtSeconds, progressLine, table } from './lib/stats.ts';

const run = promisify(execFile);

const help = `npm run chaos -- [options]       (or: node bench/chaos.ts [options])

Runs Engine Room as several processes on one PostgreSQL (a scratch database, created and dropped):
API processes (WORKERS=off, each on its own port) and worker processes, with short job leases.
Clients place and cancel orders with a mix of sandbox tokens (tok_ok, tok_flaky, tok_lost_response,
tok_declined), retrying with the same Idempotency-Key on errors, timeouts and reset connections,
alternating between the API processes. Meanwhile a random process is killed with SIGKILL every few
seconds and started again, every session of the scratch database is ended now and then (as a
failover would), and PostgreSQL itself is restarted once (pg_ctlcluster; needs root and a local
cluster). Then it stops the chaos, lets the workers drain, checks, and prints a table.
Exit status: 0 when every check holds, 1 on any violation, 2 on a usage error.

Options:
  --seconds S            seconds of chaos (default 60)
  --clients N            concurrent clients (default 12)
  --api-processes N      API processes (default 2, at least 2)
  --worker-processes N   worker processes (default 2, at least 2)
  --kill-every S         mean seconds between two kills (default 3)
  --min-kills N          go on past --seconds until this many running processes were killed
                         (default 1: on a busy machine the starts can take most of a short run)
  --no-db-restart        do not restart PostgreSQL (for runs that share the server with others,
                         like the test suite)
  --terminate-every S    mean seconds between two cuts of every session of the scratch database
                         (pg_terminate_backend: lost connections, without touching the server or
                         its other databases; default 2, 0 for none)
  --pg-cluster V/NAME    the cluster to restart (default: the local one listening on the URL's port)
  --drain-seconds S      longest wait for the workers to settle every payment and refund (default 120)
  --database-url URL     the PostgreSQL server (default DATABASE_URL, else ${defaultDatabaseUrl})
  --json FILE            write the results as JSON
  --node-arg ARG         an option for node in every Engine Room process (repeatable), e.g. --cpu-prof
  --keep                 keep the scratch database and the process logs
  -h, --help             this help
`;

interface Options {
  seconds: number;
  clients: number;
  apiProcesses: number;
  workerProcesses: number;
  killEvery: number;
  minKills: number;
  restartDb: boolean;
  terminateEvery: number;
  pgCluster: string | undefined;
  drainSeconds: number;
  databaseUrl: string;
  json: string | undefined;
  keep: boolean;
  nodeArgs: string[];
}

function usage(message: string): never {
  process.stderr.write(`chaos: ${message}\n(see --help)\n`);
  process.exit(2);
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      seconds: { type: 'string', default: '60' },
      clients: { type: 'string', default: '12' },
      'api-processes': { type: 'string', default: '2' },
      'worker-processes': { type: 'string', default: '2' },
      'kill-every': { type: 'string', default: '3' },
      'min-kills': { type: 'string', default: '1' },
      'no-db-restart': { type: 'boolean', default: false },
      'terminate-every': { type: 'string', default: '2' },
      'pg-cluster': { type: 'string' },
      'drain-seconds': { type: 'string', default: '120' },
      'database-url': { type: 'string' },
      json: { type: 'string' },
      keep: { type: 'boolean', default: false },
      'node-arg': { type: 'string', multiple: true, default: [] },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(help);
    process.exit(0);
  }
  const num = (name: string, raw: string | undefined, min: number, max: number): number => {
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min || n > max)
      usage(`--${name} must be a number from ${min} to ${max} (got "${raw}")`);
    return n;
  };
  return {
    seconds: num('seconds', values.seconds, 5, 86_400),
    clients: Math.round(num('clients', values.clients, 1, 500)),
    apiProcesses: Math.round(num('api-processes', values['api-processes'], 2, 16)),
    workerProcesses: Math.round(num('worker-processes', values['worker-processes'], 2, 16)),
    killEvery: num('kill-every', values['kill-every'], 0.5, 600),
    minKills: Math.round(num('min-kills', values['min-kills'], 0, 1000)),
    restartDb: !values['no-db-restart'],
    terminateEvery: num('terminate-every', values['terminate-every'], 0, 600),
    pgCluster: values['pg-cluster'],
    drainSeconds: num('drain-seconds', values['drain-seconds'], 5, 3600),
    databaseUrl: values['database-url'] ?? process.env.DATABASE_URL ?? defaultDatabaseUrl,
    json: values.json,
    keep: values.keep!,
    nodeArgs: values['node-arg'] ?? [],
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rand = (n: number) => Math.floor(Math.random() * n);
const admin = { email: 'chaos-admin@example.com', password: 'chaos-admin-password' };

// ---------------------------------------------------------------------------------------------
// The processes: each slot is one role on one port, started again after every kill.

interface Crash {
  label: string;
  generation: number;
  code: number | null;
  signal: string | null;
  atSecond: number;
  stderr: string;
  logFile: string | undefined;
}

interface Slot {
  spec: EngineSpec;
  current: EngineProcess | undefined;
  /** Set while we kill it on purpose; any other exit of a ready process is a crash. */
  killing: boolean;
  generation: number;
  starting: Promise<void> | undefined;
}

function fleet(specs: EngineSpec[], t0: number, log: (s: string) => void) {
  const slots = specs.map((spec): Slot => ({
    spec,
    current: undefined,
    killing: false,
    generation: 0,
    starting: undefined,
  }));
  const crashes: Crash[] = [];
  /** Clean stops on a signal that someone else sent (not a fault of the process, but worth saying). */
  const stoppedFromOutside: Crash[] = [];
  const startFailures: { label: string; atSecond: number; reason: string }[] = [];
  let stopping = false;

  function watch(slot: Slot, proc: EngineProcess): void {
    void proc.exited.then(({ code, signal }) => {
      if (slot.killing || stopping || slot.current !== proc) return;
      const tail = proc.stderr().split('\n').filter(Boolean).slice(-15).join('\n');
      const record = {
        label: slot.spec.label,
        generation: proc.generation,
        code,
        signal,
        atSecond: (Date.now() - t0) / 1000,
        stderr: tail,
        logFile: proc.logFile,
      };
      if (code === 0 && /(SIGTERM|SIGINT) received, stopping/.test(tail)) {
        stoppedFromOutside.push(record);
        log(`!! ${slot.spec.label} (pid ${proc.pid}) was stopped by a signal from outside this run; starting it again`);
      } else {
        crashes.push(record);
        log(
          `!! ${slot.spec.label} (pid ${proc.pid}) exited on its own (code ${code}, signal ${signal}); starting it again`,
        );
      }
      void start(slot);
    });
  }

  /** Starts the slot's process, again and again while it fails to start (the database may be down). */
  function start(slot: Slot): Promise<void> {
    slot.starting ??= (async () => {
      const deadline = Date.now() + 120_000;
      for (;;) {
        slot.generation++;
        const proc = startEngineProcess(slot.spec, slot.generation, 60_000);
        slot.current = proc;
        try {
          await proc.ready;
          watch(slot, proc);
          return;
        } catch (err) {
          await proc.kill('SIGKILL');
          const reason =
            (err as Error).message.split('\n').find((l) => /cannot|error|Error/.test(l)) ??
            (err as Error).message.split('\n')[0]!;
          startFailures.push({ label: slot.spec.label, atSecond: (Date.now() - t0) / 1000, reason: reason.trim() });
          if (stopping || Date.now() > deadline) throw err;
          await sleep(500);
        }
      }
    })().finally(() => {
      slot.starting = undefined;
    });
    return slot.starting;
  }

  return {
    slots,
    crashes,
    stoppedFromOutside,
    startFailures,
    // The first alone: on a fresh database it creates the job queues, and processes that create
    // them at the same moment can deadlock (see docs/PERFORMANCE.md, "Found on the way").
    startAll: async () => {
      await start(slots[0]!);
      await Promise.all(slots.slice(1).map(start));
    },
    /** Calls onKilled once it has killed a running process (a slot whose restart failed has none). */
    async killAndRestart(slot: Slot, onKilled: () => void): Promise<void> {
      if (slot.starting) await slot.starting.catch(() => {});
      const victim = slot.current?.running() ? slot.current : undefined;
      slot.killing = true;
      await victim?.kill('SIGKILL');
      slot.killing = false;
      if (victim) onKilled();
      await start(slot);
    },
    /** Every slot running (restarting those that are down). */
    async ensureAll(): Promise<void> {
      await Promise.all(
        slots.map(async (slot) => {
          if (slot.starting) await slot.starting.catch(() => {});
          if (!slot.current?.running()) await start(slot);
        }),
      );
    },
    async stopAll(): Promise<{ label: string; code: number | null; signal: string | null }[]> {
      stopping = true;
      return Promise.all(
        slots.map(async (slot) => {
          if (slot.starting) await slot.starting.catch(() => {});
          const r = await (slot.current?.kill('SIGTERM') ?? Promise.resolve({ code: null, signal: null }));
          return { label: slot.spec.label, ...r };
        }),
      );
    },
    killEverything: () => Promise.all(slots.map((s) => s.current?.kill('SIGKILL'))),
  };
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL restart

async function findCluster(databaseUrl: string): Promise<string | undefined> {
  const u = new URL(databaseUrl);
  if (!['127.0.0.1', 'localhost', '::1', '[::1]', ''].includes(u.hostname)) return undefined;
  const port = u.port || '5432';
  try {
    const { stdout } = await run('pg_lsclusters', ['--no-header']);
    for (const line of stdout.split('\n')) {
      const [version, name, clusterPort, status] = line.trim().split(/\s+/);
      if (clusterPort === port && status === 'online') return `${version}/${name}`;
    }
  } catch {
    return undefined;
  }
  return undefined;
}

async function restartPostgres(cluster: string): Promise<number> {
  const [version, name] = cluster.split('/');
  const started = Date.now();
  await run('pg_ctlcluster', ['--skip-systemctl-redirect', version!, name!, 'restart'], { timeout: 120_000 });
  return (Date.now() - started) / 1000;
}

// ---------------------------------------------------------------------------------------------
// The clients

interface KeyRecord {
  client: number;
  userId: string;
  key: string;
  kind: 'order' | 'cancel';
  method: string;
  path: string;
  body: unknown;
  /** The first definitive answer (status, and the order id of a 201/200). */
  final?: { status: number; orderId?: string; code?: string };
  attempts: number;
}

interface ClientStats {
  requests: number;
  statuses: Record<string, number>;
  retries: number;
  idMismatches: { key: string; first: string; then: string }[];
}

const tokens: [string, number][] = [
  ['tok_ok', 55],
  ['tok_flaky', 15],
  ['tok_lost_response', 15],
  ['tok_declined', 15],
];
function pickToken(): string {
  let r = rand(100);
  for (const [t, w] of tokens) {
    if (r < w) return t;
    r -= w;
  }
  return 'tok_ok';
}

function statusKey(reply: Reply): string {
  if (reply.status === 0) return reply.error ?? 'network error';
  if (reply.status < 400) return String(reply.status);
  const code = jsonOf<{ code?: string }>(reply)?.code;
  return code ? `${reply.status} ${code}` : String(reply.status);
}

function load(seeded: Seeded, apis: () => HttpClient[], clients: number) {
  const keys = new Map<string, KeyRecord>();
  const acked = new Map<string, string>(); // order id -> key
  const stats: ClientStats = { requests: 0, statuses: {}, retries: 0, idMismatches: [] };
  let stop = false;
  let hardStopAt = Infinity;

  /** Sends the key's request until a definitive answer, switching API process on every attempt. */
  async function resolve(rec: KeyRecord, c: number, patienceMs: number): Promise<boolean> {
    const giveUpAt = Date.now() + patienceMs;
    for (;;) {
      const targets = apis();
      const http = targets[(c + rec.attempts) % targets.length]!;
      rec.attempts++;
      if (rec.attempts > 1) stats.retries++;
      const customer = seeded.customers[rec.client % seeded.customers.length]!;
      const reply = await http.request(rec.method, rec.path, {
        token: customer.token,
        idempotencyKey: rec.key,
        body: rec.body,
        timeoutMs: 4000,
      });
      stats.requests++;
      const sk = statusKey(reply);
      stats.statuses[sk] = (stats.statuses[sk] ?? 0) + 1;
      const transient =
        reply.status === 0 || reply.status >= 500 || sk === '409 idempotency_key_in_use' || reply.status === 429;
      if (!transient) {
        const body = jsonOf<{ id?: string; code?: string }>(reply);
        const orderId = reply.status < 300 ? body?.id : undefined;
        if (rec.kind === 'order' && reply.status === 201 && orderId) {
          const before = rec.final?.orderId;
          if (before && before !== orderId) stats.idMismatches.push({ key: rec.key, first: before, then: orderId });
          if (!acked.has(orderId)) acked.set(orderId, rec.key);
        }
        rec.final ??= {
          status: reply.status,
          ...(orderId ? { orderId } : {}),
          ...(body?.code ? { code: body.code } : {}),
        };
        return true;
      }
      if (Date.now() > giveUpAt || Date.now() > hardStopAt) return false;
      await sleep(Math.min(2000, 50 * 2 ** Math.min(rec.attempts, 6)) * (0.5 + Math.random()));
    }
  }

  async function client(c: number): Promise<void> {
    const customer = seeded.customers[c % seeded.customers.length]!;
    const mine: string[] = [];
    for (let n = 0; !stop; n++) {
      let rec: KeyRecord;
      if (mine.length > 0 && rand(100) < 12) {
        const id = mine.splice(rand(mine.length), 1)[0]!;
        rec = {
          client: c,
          userId: customer.userId,
          key: `chaos-cxl-${c}-${n}`,
          kind: 'cancel',
          method: 'POST',
          path: `/v1/orders/${id}/cancel`,
          body: undefined,
          attempts: 0,
        };
      } else {
        const lines =
          rand(10) === 0
            ? [{ sku: hotSku, quantity: 1 + rand(3) }]
            : [...new Set([seeded.skus[rand(seeded.skus.length)]!, seeded.skus[rand(seeded.skus.length)]!])].map(
                (sku) => ({ sku, quantity: 1 + rand(2) }),
              );
        rec = {
          client: c,
          userId: customer.userId,
          key: `chaos-ord-${c}-${n}`,
          kind: 'order',
          method: 'POST',
          path: '/v1/orders',
          body: { lines, payment: { method: 'card', token: pickToken() } },
          attempts: 0,
        };
      }
      keys.set(`${customer.userId}\0${rec.key}`, rec);
      await resolve(rec, c, 90_000);
      if (rec.kind === 'order' && rec.final?.orderId) {
        mine.push(rec.final.orderId);
        if (mine.length > 30) mine.shift();
      }
      await sleep(rand(20));
    }
  }

  let running: Promise<unknown> | undefined;
  return {
    keys,
    acked,
    stats,
    start() {
      running = Promise.all(Array.from({ length: clients }, (_, c) => client(c)));
    },
    /** Stops starting new requests; waits (bounded) for the ones under way to be answered. */
    async stop(boundMs: number): Promise<void> {
      stop = true;
      hardStopAt = Date.now() + boundMs;
      await running;
    },
    /** Sends every key still without a definitive answer again until it has one (bounded). */
    async resolveRemaining(boundMs: number): Promise<{ before: number; after: number }> {
      hardStopAt = Date.now() + boundMs;
      const open = [...keys.values()].filter((r) => !r.final);
      await Promise.all(open.map((r) => resolve(r, r.client, boundMs)));
      return { before: open.length, after: [...keys.values()].filter((r) => !r.final).length };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The checks

interface Check {
  name: string;
  ok: boolean;
  detail: string;
  violations: unknown[];
}

async function checks(
  db: Db,
  l: ReturnType<typeof load>,
  extra: {
    pendingAfterDrain: { payments: number; refunds: number };
    audit: { ok: boolean; checks: { name: string; ok: boolean; violations: unknown[] }[] } | undefined;
    crashes: Crash[];
  },
): Promise<Check[]> {
  const out: Check[] = [];
  const add = (name: string, violations: unknown[], detail: string) =>
    out.push({ name, ok: violations.length === 0, detail, violations: violations.slice(0, 20) });

  // 1. Every order acknowledged with 201 exists.
  const ackedIds = [...l.acked.keys()];
  const found = new Set(
    (await db.query<{ id: string }>('SELECT id FROM orders WHERE id = ANY($1::text[])', [ackedIds])).map((r) => r.id),
  );
  const missing = ackedIds.filter((id) => !found.has(id));
  add(
    'every order acknowledged with 201 exists',
    missing,
    `${fmtInt(ackedIds.length)} acknowledged, ${fmtInt(missing.length)} missing`,
  );

  // 2. A key answers one order, however often it is sent.
  add(
    'every retry of a key answered the same order',
    l.stats.idMismatches,
    `${fmtInt(l.stats.retries)} retries, ${fmtInt(l.stats.idMismatches.length)} answered another order`,
  );

  // 3. No order that no client asked for: each order is the stored answer of an order key that a
  // client sent (read back from the idempotency record written in the order's own transaction,
  // which only the raw key opens), and was acknowledged to that client (every key was resolved
  // before this check).
  const orderKeys = [...l.keys.values()].filter((r) => r.kind === 'order');
  const answers = await readOutcomes(
    db,
    orderKeys.map((r) => ({ principalId: r.userId, key: r.key })),
  );
  const answeredBy = new Map<string, KeyRecord[]>();
  answers.forEach((answer, i) => {
    const id = answer?.status === 201 ? (answer.body as { id?: string }).id : undefined;
    if (id) answeredBy.set(id, [...(answeredBy.get(id) ?? []), orderKeys[i]!]);
  });
  const orders = await db.query<{ id: string; customer_id: string }>('SELECT id, customer_id FROM orders');
  const orphans: unknown[] = [];
  for (const o of orders) {
    const recs = answeredBy.get(o.id) ?? [];
    if (recs.length === 0) {
      orphans.push({ order: o.id, problem: 'no idempotency key a client sent answered it' });
      continue;
    }
    if (recs.length > 1) orphans.push({ order: o.id, problem: `${recs.length} keys answered it` });
    const sent = recs[0]!;
    if (sent.userId !== o.customer_id)
      orphans.push({ order: o.id, key: sent.key, problem: 'placed for another customer' });
    else if (sent.final?.orderId !== o.id)
      orphans.push({
        order: o.id,
        key: sent.key,
        problem: `the client's answer for this key was ${sent.final ? `${sent.final.status} ${sent.final.orderId ?? sent.final.code ?? ''}` : 'never received'}`,
      });
  }
  add(
    'no order exists that no client asked for',
    orphans,
    `${fmtInt(orders.length)} orders in the database, each the answer to one client's key`,
  );

  // 4. Charged exactly once by the sandbox processor.
  const charges = await db.query<{
    id: string;
    status: string;
    payment_status: string | null;
    charged: number;
    requests: number;
  }>(
    `SELECT o.id, o.status, p.status AS payment_status,
            (SELECT count(*)::int FROM sandbox_charges c WHERE c.order_id = o.id AND c.status = 'succeeded') AS charged,
            (SELECT coalesce(max(c.attempts), 0)::int FROM sandbox_charges c WHERE c.order_id = o.id) AS requests
       FROM orders o LEFT JOIN payments p ON p.order_id = o.id`,
  );
  const chargeViolations: unknown[] = [];
  let maxRequests = 0,
    paid = 0;
  for (const c of charges) {
    maxRequests = Math.max(maxRequests, c.requests);
    const captured = c.payment_status === 'succeeded' || c.payment_status === 'refunded';
    if (c.status === 'paid' || c.status === 'fulfilled') paid++;
    if (c.charged > 1) chargeViolations.push({ order: c.id, problem: `charged ${c.charged} times` });
    else if ((c.status === 'paid' || c.status === 'fulfilled' || captured) && c.charged !== 1)
      chargeViolations.push({
        order: c.id,
        status: c.status,
        payment: c.payment_status,
        problem: `charged ${c.charged} times`,
      });
    else if (!captured && c.charged > 0)
      chargeViolations.push({
        order: c.id,
        status: c.status,
        payment: c.payment_status,
        problem: 'charged, but the payment is not recorded as captured',
      });
  }
  const strays = await db.query<{ order_id: string }>(
    'SELECT DISTINCT c.order_id FROM sandbox_charges c LEFT JOIN orders o ON o.id = c.order_id WHERE o.id IS NULL',
  );
  for (const s of strays)
    chargeViolations.push({ order: s.order_id, problem: 'the processor charged for an order that does not exist' });
  add(
    'every paid order was charged exactly once by the processor',
    chargeViolations,
    `${fmtInt(paid)} paid orders; at most ${maxRequests} requests for one charge key, deduplicated by the processor`,
  );

  // 5. Stock conserved: levels = movements, and = starting stock + adjustments - paid lines (on hand),
  // = pending lines (reserved).
  const levelDiff = await stockDiscrepancies(db);
  const conserved = await db.query<{
    sku: string;
    on_hand: number;
    reserved: number;
    expected_on_hand: number;
    expected_reserved: number;
  }>(
    `SELECT s.sku, s.on_hand, s.reserved,
            (coalesce(base.q, 0) - coalesce(sold.q, 0))::int AS expected_on_hand, coalesce(open.q, 0)::int AS expected_reserved
       FROM stock_levels s
       LEFT JOIN (SELECT sku, sum(on_hand_delta) AS q FROM stock_movements WHERE kind IN ('initial', 'adjustment') GROUP BY sku) base USING (sku)
       LEFT JOIN (SELECT l.sku, sum(l.quantity) AS q FROM order_lines l JOIN orders o ON o.id = l.order_id WHERE o.status IN ('paid', 'fulfilled') GROUP BY l.sku) sold USING (sku)
       LEFT JOIN (SELECT l.sku, sum(l.quantity) AS q FROM order_lines l JOIN orders o ON o.id = l.order_id WHERE o.status = 'pending_payment' GROUP BY l.sku) open USING (sku)
      WHERE s.on_hand <> coalesce(base.q, 0) - coalesce(sold.q, 0) OR s.reserved <> coalesce(open.q, 0)`,
  );
  const [units] = await db.query<{ sold: number; on_hand: number }>(
    `SELECT (SELECT coalesce(sum(l.quantity), 0) FROM order_lines l JOIN orders o ON o.id = l.order_id WHERE o.status IN ('paid', 'fulfilled'))::int AS sold,
            (SELECT coalesce(sum(on_hand), 0) FROM stock_levels)::int AS on_hand`,
  );
  add(
    'stock is conserved (levels = movements = start - sold; reserved = open orders)',
    [...levelDiff, ...conserved],
    `${fmtInt(units!.sold)} units sold, ${fmtInt(units!.on_hand)} on hand`,
  );

  // 6. Never negative: the CHECK constraints are there and validated, and replaying each SKU's
  // movements in order (their ids follow the row lock, so the order of commits) never goes below zero.
  const constraints = await db.query<{ conname: string; convalidated: boolean; def: string }>(
    `SELECT conname, convalidated, pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = 'stock_levels'::regclass AND contype = 'c'`,
  );
  const defs = constraints.filter((c) => c.convalidated).map((c) => c.def.replace(/\s+/g, ' '));
  const need = [/on_hand >= 0/, /reserved >= 0/, /reserved <= on_hand/];
  const negViolations: unknown[] = need
    .filter((re) => !defs.some((d) => re.test(d)))
    .map((re) => ({ problem: `no validated CHECK constraint ${re.source} on stock_levels` }));
  negViolations.push(
    ...(await db.query(
      `SELECT sku, min(on_hand)::int AS lowest_on_hand, min(reserved)::int AS lowest_reserved, max(reserved - on_hand)::int AS most_over
       FROM (SELECT sku, sum(on_hand_delta) OVER w AS on_hand, sum(reserved_delta) OVER w AS reserved
               FROM stock_movements WINDOW w AS (PARTITION BY sku ORDER BY id)) t
      GROUP BY sku HAVING min(on_hand) < 0 OR min(reserved) < 0 OR max(reserved - on_hand) > 0`,
    )),
  );
  const [{ n: movements } = { n: 0 }] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM stock_movements');
  add(
    'stock never went negative (CHECK constraints; every movement replayed)',
    negViolations,
    `${constraints.length} CHECK constraints on stock_levels, ${fmtInt(movements)} movements replayed`,
  );

  // 7. The ledger balances, per transaction and in total, and matches the processor.
  const unbalanced = await db.query(
    `SELECT transaction_id, currency, sum(debit)::bigint AS debits, sum(credit)::bigint AS credits FROM ledger_entries GROUP BY 1, 2 HAVING sum(debit) <> sum(credit) LIMIT 20`,
  );
  const [totals] = await db.query<{
    debits: number;
    credits: number;
    clearing: number;
    charged: number;
    refunded: number;
  }>(
    `SELECT (SELECT coalesce(sum(debit), 0) FROM ledger_entries)::bigint AS debits, (SELECT coalesce(sum(credit), 0) FROM ledger_entries)::bigint AS credits,
            (SELECT coalesce(sum(debit - credit), 0) FROM ledger_entries WHERE account = 'processor_clearing')::bigint AS clearing,
            (SELECT coalesce(sum(amount), 0) FROM sandbox_charges WHERE status = 'succeeded')::bigint AS charged,
            (SELECT coalesce(sum(amount), 0) FROM sandbox_refunds WHERE status = 'succeeded')::bigint AS refunded`,
  );
  const t = totals!;
  const ledgerViolations: unknown[] = [...unbalanced];
  if (Number(t.debits) !== Number(t.credits))
    ledgerViolations.push({ problem: `total debits ${t.debits} <> credits ${t.credits}` });
  if (Number(t.clearing) !== Number(t.charged) - Number(t.refunded))
    ledgerViolations.push({
      problem: `processor clearing ${t.clearing} <> charged ${t.charged} - refunded ${t.refunded}`,
    });
  add(
    'the ledger balances (and matches what the processor holds)',
    ledgerViolations,
    `debits = credits = ${fmtInt(Number(t.debits))}; clearing ${fmtInt(Number(t.clearing))} = charged ${fmtInt(Number(t.charged))} - refunded ${fmtInt(Number(t.refunded))}`,
  );

  // 8. Nothing left hanging.
  const pending = extra.pendingAfterDrain;
  add(
    'every payment and refund settled after the drain',
    pending.payments + pending.refunds > 0 ? [pending] : [],
    `${pending.payments} payments and ${pending.refunds} refunds still pending`,
  );

  // 9. The audit.
  add(
    'the audit passes (GET /v1/admin/audit)',
    extra.audit ? extra.audit.checks.filter((c) => !c.ok) : [{ problem: 'the audit did not answer' }],
    extra.audit ? `${extra.audit.checks.filter((c) => c.ok).length}/${extra.audit.checks.length} checks ok` : 'not run',
  );

  // 10. A lost database or a killed peer is a 503 (retry shortly), never a 500 (our fault).
  const faults = Object.entries(l.stats.statuses).filter(([k]) => k.startsWith('500'));
  add(
    'no request was answered 500 (a lost database answers 503)',
    faults.map(([status, n]) => ({ status, n })),
    faults.length
      ? `${faults.reduce((sum, [, n]) => sum + n, 0)} answered 500: see "unhandled error" in the process logs (--keep)`
      : 'none',
  );

  // 11. Processes die only when we kill them.
  add(
    'no process exited on its own',
    extra.crashes.map((c) => ({
      process: c.label,
      code: c.code,
      signal: c.signal,
      atSecond: Number(c.atSecond.toFixed(1)),
      log: c.logFile,
      stderr: c.stderr,
    })),
    extra.crashes.length ? `${extra.crashes.length} exited unexpectedly` : 'none',
  );
  return out;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const out = (s: string) => process.stdout.write(s);
  let cluster: string | undefined;
  if (o.restartDb) {
    cluster = o.pgCluster ?? (await findCluster(o.databaseUrl));
    if (!cluster)
      log('chaos: no local PostgreSQL cluster found for the URL (pg_lsclusters); the database will not be restarted');
  }

  const scratch: Scratch = await createScratch(o.databaseUrl, 'chaos');
  const logDir = await mkdtemp(join(tmpdir(), 'er-chaos-'));
  const db = openPostgres(scratch.url, 3, () => {});
  let failed = true;
  let f: ReturnType<typeof fleet> | undefined;
  try {
    await migrate(db);
    // Enough stock that most orders find some for the whole run, and a hot SKU that sells out early.
    const seeded = await seedBySql(db, {
      customers: o.clients,
      skus: 20,
      stock: Math.max(400, Math.round(12 * o.seconds)),
      hotStock: 100,
      salt: randomBytes(6).toString('hex'),
    });
    await seedAdmin(db, admin.email, admin.password);
    await analyzeSeeded(db);

    const env = {
      DATABASE_URL: scratch.url,
      ADMIN_EMAIL: admin.email,
      ADMIN_PASSWORD: admin.password,
      LOG_LEVEL: 'warn',
      DATABASE_POOL_SIZE: '5',
      WORKER_CONCURRENCY: '4',
      WORKER_POLL_INTERVAL_MS: '200',
      // Short leases: a job whose worker was killed comes back within seconds.
      PAYMENT_JOB_LEASE_SECONDS: '3',
      QUEUE_MAINTENANCE_INTERVAL_SECONDS: '1',
      SHUTDOWN_TIMEOUT_SECONDS: '3',
      // Never throttled nor shed: the run checks what crashes do, and every client is one address.
      RATE_LIMIT_READ_MAX: '100000000',
      RATE_LIMIT_WRITE_MAX: '100000000',
      RATE_LIMIT_AUTH_MAX: '100000000',
      SHED_TARGET_WAIT_MS: '0',
      SHED_EVENT_LOOP_DELAY_MS: '0',
      SHED_SLOW_UPLOADS_PER_CLIENT: '0',
    };
    const specs: EngineSpec[] = [];
    for (let i = 1; i <= o.apiProcesses; i++)
      specs.push({
        role: 'api',
        label: `api-${i}`,
        port: await freePort(),
        env: { ...env, WORKERS: 'off' },
        logDir,
        nodeArgs: o.nodeArgs,
      });
    for (let i = 1; i <= o.workerProcesses; i++)
      specs.push({ role: 'worker', label: `worker-${i}`, env, logDir, nodeArgs: o.nodeArgs });
    const t0 = Date.now();
    f = fleet(specs, t0, log);
    await f.startAll();
    const apiSlots = f.slots.filter((s) => s.spec.role === 'api');
    const apis = apiSlots.map((s) => httpClient(`http://127.0.0.1:${s.spec.port}`));
    log(
      `chaos: ${specs.map((s) => s.label).join(', ')} on ${scratch.name}; ${o.clients} clients for ${o.seconds} s, a SIGKILL every ~${o.killEvery} s${o.terminateEvery > 0 ? `, every database session cut every ~${o.terminateEvery} s` : ''}${cluster ? `, PostgreSQL ${cluster} restarted once` : ''}`,
    );

    // The load, and the killing.
    const l = load(seeded, () => apis, o.clients);
    l.start();
    const end = Date.now() + o.seconds * 1000;
    const kills: { label: string; atSecond: number }[] = [];
    const terminations: { atSecond: number; sessions: number }[] = [];
    let dbRestart: { atSecond: number; seconds: number } | { atSecond: number; error: string } | undefined;
    const restartAt = end - o.seconds * 600;
    const progress = progressLine(process.stderr, 5000);
    const ticker = setInterval(() => {
      const acked = l.acked.size;
      progress.update(
        `chaos ${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s  ${fmtInt(acked)} orders acknowledged  ${fmtInt(l.stats.requests)} requests  ${fmtInt(l.stats.retries)} retries  ${kills.length} kills  ${terminations.length} connection cuts${dbRestart ? '  db restarted' : ''}  ${f!.crashes.length} crashes`,
      );
    }, 500);
    // Every session of our database ends at once, now and then, as on a failover or an admin's
    // pg_terminate_backend; other databases on the server are not touched.
    const cutting = (async () => {
      while (o.terminateEvery > 0) {
        await sleep(o.terminateEvery * 1000 * (0.5 + Math.random()));
        if (Date.now() >= end) return;
        const at = (Date.now() - t0) / 1000;
        const ended = await withClient(o.databaseUrl, (c) =>
          c.query<{ n: number }>(
            'SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
            [scratch.name],
          ),
        ).then(
          (r) => r.rows[0]!.n,
          () => 0,
        );
        terminations.push({ atSecond: at, sessions: ended });
      }
    })();
    // The window counts from the start of the load; and a run that killed nothing proves nothing,
    // so it goes on (load included) until it has killed --min-kills running processes.
    const enough = () => Date.now() >= end && kills.length >= o.minKills;
    while (!enough()) {
      await sleep(o.killEvery * 1000 * (0.5 + Math.random()));
      if (enough()) break;
      if (cluster && !dbRestart && Date.now() >= restartAt) {
        const at = (Date.now() - t0) / 1000;
        try {
          dbRestart = { atSecond: at, seconds: await restartPostgres(cluster) };
        } catch (err) {
          dbRestart = { atSecond: at, error: (err as Error).message };
        }
        continue;
      }
      const slot = f.slots[rand(f.slots.length)]!;
      const at = (Date.now() - t0) / 1000;
      await f
        .killAndRestart(slot, () => kills.push({ label: slot.spec.label, atSecond: at }))
        .catch((err: Error) => log(`chaos: could not restart ${slot.spec.label}: ${err.message}`));
    }
    await cutting;
    clearInterval(ticker);
    progress.done();

    // Calm down: everything up, clients finish, unanswered keys are sent again, workers drain.
    log('chaos: stopping the chaos; every process up again, clients finishing');
    await f.ensureAll();
    await l.stop(60_000);
    const resolution = await l.resolveRemaining(60_000);
    log(
      `chaos: ${resolution.before} keys without a definitive answer were sent again (${resolution.after} still open); waiting for the workers to settle every payment`,
    );
    const drainStart = Date.now();
    let pendingAfterDrain = { payments: 0, refunds: 0 };
    for (;;) {
      const [row] = await db
        .query<{ payments: number; refunds: number }>(
          `SELECT (SELECT count(*) FROM payments WHERE status = 'pending')::int AS payments, (SELECT count(*) FROM refunds WHERE status = 'pending')::int AS refunds`,
        )
        .catch(() => [{ payments: -1, refunds: -1 }]);
      pendingAfterDrain = row!;
      if (row!.payments === 0 && row!.refunds === 0) break;
      if (Date.now() - drainStart > o.drainSeconds * 1000) break;
      await sleep(500);
    }
    const drainSeconds = (Date.now() - drainStart) / 1000;

    let audit: { ok: boolean; checks: { name: string; ok: boolean; violations: unknown[] }[] } | undefined;
    try {
      const token = await adminLogin(apis[0]!.baseUrl, admin.email, admin.password);
      audit = jsonOf(await apis[0]!.request('GET', '/v1/admin/audit', { token, timeoutMs: 300_000 }));
    } catch (err) {
      log(`chaos: the audit failed to run: ${(err as Error).message}`);
    }
    for (const a of apis) a.close();
    const crashes = [...f.crashes];
    const results = await checks(db, l, { pendingAfterDrain, audit, crashes });
    const stops = await f.stopAll();
    const [counts] = await db.query<Record<string, number>>(
      `SELECT count(*)::int AS orders, count(*) FILTER (WHERE status = 'paid')::int AS paid, count(*) FILTER (WHERE status = 'payment_failed')::int AS payment_failed,
              count(*) FILTER (WHERE status = 'cancelled')::int AS cancelled, count(*) FILTER (WHERE status = 'pending_payment')::int AS pending,
              (SELECT count(*) FROM refunds WHERE status = 'succeeded')::int AS refunds
         FROM orders`,
    );

    // ---- Report
    failed = results.some((r) => !r.ok);
    const killsBy = kills.reduce<Record<string, number>>((m, k) => ({ ...m, [k.label]: (m[k.label] ?? 0) + 1 }), {});
    out(
      `\nEngine Room chaos run: ${o.apiProcesses} API + ${o.workerProcesses} worker processes, ${o.clients} clients, ${o.seconds} s\n\n`,
    );
    out(
      table(
        [
          ['what happened', ''],
          [
            'processes killed (SIGKILL) and restarted',
            `${kills.length} (${Object.entries(killsBy)
              .map(([k, n]) => `${k} ${n}`)
              .join(', ')})`,
          ],
          [
            'database sessions ended (pg_terminate_backend)',
            o.terminateEvery === 0
              ? 'no (--terminate-every 0)'
              : `${terminations.length} times (${terminations.reduce((n, t) => n + t.sessions, 0)} sessions)`,
          ],
          [
            'PostgreSQL restarted',
            !o.restartDb
              ? 'no (--no-db-restart)'
              : !dbRestart
                ? cluster
                  ? 'no (the run ended first)'
                  : 'no (no local cluster)'
                : 'error' in dbRestart
                  ? `FAILED at ${fmtSeconds(dbRestart.atSecond)}: ${dbRestart.error}`
                  : `at ${fmtSeconds(dbRestart.atSecond)}, took ${fmtSeconds(dbRestart.seconds)}`,
          ],
          ...(f.stoppedFromOutside.length
            ? [
                [
                  'stopped by a signal from outside this run',
                  f.stoppedFromOutside.map((c) => `${c.label} at ${fmtSeconds(c.atSecond)}`).join(', '),
                ],
              ]
            : []),
          [
            'starts that failed and were retried',
            `${f.startFailures.length}${f.startFailures.length ? ` (${[...new Set(f.startFailures.map((s) => s.reason))].slice(0, 2).join('; ')})` : ''}`,
          ],
          ['requests / retries', `${fmtInt(l.stats.requests)} / ${fmtInt(l.stats.retries)}`],
          [
            'answers',
            Object.entries(l.stats.statuses)
              .sort((a, b) => b[1] - a[1])
              .map(([k, n]) => `${k}: ${fmtInt(n)}`)
              .join(', '),
          ],
          ['keys resent after the chaos', `${resolution.before} (${resolution.after} never answered)`],
          [
            'orders',
            `${fmtInt(counts!.orders!)}: ${fmtInt(counts!.paid!)} paid, ${fmtInt(counts!.payment_failed!)} payment failed, ${fmtInt(counts!.cancelled!)} cancelled (${fmtInt(counts!.refunds!)} refunded), ${fmtInt(counts!.pending!)} pending`,
          ],
          ['workers drained in', fmtSeconds(drainSeconds)],
          [
            'clean stop at the end (SIGTERM)',
            stops.every((s) => s.code === 0)
              ? 'all exited 0'
              : stops.map((s) => `${s.label} ${s.code ?? s.signal}`).join(', '),
          ],
        ],
        'left',
      ),
    );
    out(
      '\n' + table([['check', 'result', 'detail'], ...results.map((r) => [r.name, r.ok ? 'ok' : 'FAILED', r.detail])]),
    );
    for (const r of results.filter((x) => !x.ok)) {
      out(`\n${r.name}: FAILED\n`);
      for (const v of r.violations.slice(0, 10)) out(`  ${JSON.stringify(v)}\n`);
    }
    out(failed ? '\nchaos: VIOLATIONS FOUND\n' : '\nchaos: all checks passed\n');
    if (failed || o.keep) out(`process logs: ${logDir}${o.keep ? `; database ${scratch.name} kept` : ''}\n`);

    if (o.json) {
      await writeFile(
        o.json,
        JSON.stringify(
          {
            options: o,
            database: scratch.name,
            kills,
            terminations,
            dbRestart,
            startFailures: f.startFailures,
            crashes,
            stoppedFromOutside: f.stoppedFromOutside,
            requests: l.stats.requests,
            retries: l.stats.retries,
            statuses: l.stats.statuses,
            resolution,
            drainSeconds,
            orders: counts,
            stops,
            checks: results,
            ok: !failed,
          },
          null,
          2,
        ) + '\n',
      );
    }
    return failed ? 1 : 0;
  } finally {
    await f?.killEverything().catch(() => {});
    await db.close().catch(() => {});
    if (!o.keep) {
      await scratch.drop().catch((err: Error) => log(`chaos: could not drop ${scratch.name}: ${err.message}`));
      if (!failed) await rm(logDir, { recursive: true, force: true });
    }
  }
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`chaos: ${err.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
