// npm run bench: Engine Room under load, through its real HTTP API, next to what the database
// alone does with the same transaction (pgbench, same server, same invocation). A measurement,
// never a test: it fails (exit 1) only when a correctness check fails (the audit, an oversold hot
// SKU, an order placed twice by retries), never on a speed figure.
//
//   npm run bench -- --help
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir, cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createHash, randomBytes } from 'node:crypto';
import { openPglite, openPostgres, type Db } from '../src/platform/db.ts';
import { migrate } from '../src/platform/migrate.ts';
import {
  createScratch,
  defaultDatabaseUrl,
  freePort,
  startEngineProcess,
  type EngineProcess,
  type Scratch,
} from './lib/engine.ts';
import {
  analyzeSeeded,
  adminLogin,
  seedAdmin,
  seedByApi,
  seedBySql,
  type SeedOptions,
  type Seeded,
} from './lib/seed.ts';
import { defaultScenarios, scenarios, type LoadResult, type RunSpec, type Scenario } from './lib/loadgen.ts';
import {
  generatedScripts,
  preparePgbenchDatabase,
  runPgbench,
  waitEventSampler,
  whatIfVariants,
  type PgbenchResult,
  pgbenchScripts,
} from './lib/pgbench.ts';
import { cpuMeter, loadAverage, memorySampler, schedSeconds } from './lib/proc.ts';
import {
  fmtInt,
  fmtMb,
  fmtMs,
  fmtPct,
  fmtSeconds,
  percentiles,
  progressLine,
  table,
  type Percentiles,
} from './lib/stats.ts';
import { httpClient, jsonOf } from './lib/http.ts';
import { formatSummary, profilesIn, summarize } from './profile-summary.ts';
import { generateScripts } from './lib/capture.ts';
import { readFile } from 'node:fs/promises';
import { packageRoot } from '../src/platform/paths.ts';
import { startOtlpSink, type OtlpSink } from './lib/otlp-sink.ts';

const here = dirname(fileURLToPath(import.meta.url));

// What to undo when the bench stops early (an error, Ctrl-C): processes, scratch databases, files.
const cleanups: (() => Promise<unknown>)[] = [];
async function cleanUp(): Promise<void> {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
}

const help = `npm run bench -- [options]       (or: node bench/bench.ts [options])

Drives Engine Room's HTTP API with concurrent virtual customers and prints, per scenario, orders/s,
latency percentiles, status codes, queue lag (placed -> paid), peak memory of the server processes
and who used the CPU; next to it, pgbench running the same order transaction on the same PostgreSQL
("HTTP orders/s as a share of what the database alone does"). Then the audit's verdict.

Scenarios (--scenarios, comma-separated; default all but flash-burst and overload):
  steady        orders of two lines over many SKUs
  flash-sale    everyone buys the one hot SKU (limited stock: --hot-stock); oversell is checked
  retry-storm   clients give up on some requests at a random moment and resend them with the
                same Idempotency-Key, and resend some answered ones; duplicates are checked
  mixed         browse, view, order, view order, cancel, message (left out while
                /v1/conversations answers 404)
  flash-burst   --clients signed-in buyers order one unit of a fresh SKU of --burst-stock units,
                all at the same moment, --burst-rounds times: exactly the stock placed, the rest
                out_of_stock, how many were shed (503) and how long the last one waited
  overload      the best rate this machine places orders at (a closed loop of --clients for
                --calibration-seconds), then arrivals at --overload-factor times it (open loop,
                one request each, not retried) for --seconds: the p99 of accepted orders, the
                excess refused 503 with Retry-After, the rate placed against the best

Where it runs:
  (default)              a scratch database on PostgreSQL (--database-url, else DATABASE_URL, else
                         ${defaultDatabaseUrl}), created, seeded by SQL and dropped
  --embedded             the embedded database (PGlite) in a temporary directory; no pgbench
  --url URL              an Engine Room already running; needs --admin-email and --admin-password;
                         seeds through the API; no pgbench, queue lag or memory figures
  --api-processes N      engine-room start processes (default 1)
  --worker-processes M   engine-room worker processes (default 0: workers run inside start;
                         with M > 0 the API processes run with WORKERS=off)
  --processes N          run the scenarios twice, in two layouts one after the other: one process
                         with its workers inside, then N API and N worker processes; prints the
                         many-process orders/s as a share of the one-process figure (each layout
                         is a whole bench run of its own, with fresh databases)
  --no-workers           no job workers at all (WORKERS=off, no worker process): the API's order path
                         alone, as pgbench's reference is; nothing gets paid, so no queue lag
  --pool-size N          DATABASE_POOL_SIZE of each process (default 10, the product's default)
  --env KEY=VALUE        extra environment for the server processes (repeatable)
  --no-rate-limits       RATE_LIMITS=off (by default the limits count, with maxima no bench reaches:
                         compare the two for their cost; npm run bench:rate-limit measures it alone)
  --trace                tracing on: the server processes export every span (OTLP/HTTP) to a sink
                         in the bench that accepts and discards them (compare with a run without)

Load:
  --clients N            concurrent virtual customers (default 32)
  --seconds S            measured seconds per scenario (default 20)
  --warmup S             seconds of load before measuring (default 3)
  --rate R               pace the clients to R iterations/s in total (default: as fast as answers come)
  --skus N               ordinary SKUs in the catalog (default 1000)
  --hot-stock N          units of the hot SKU (default 1000000)
  --timeout-ms N         client timeout per request (default 30000)
  --burst-stock N        flash-burst: units of each round's SKU (default 10)
  --burst-rounds N       flash-burst: rounds, each on a fresh SKU (default 5)
  --overload-factor X    overload: arrivals as a multiple of the best rate (default 2)
  --calibration-seconds S  overload: seconds of the closed loop that finds the best rate (default 10)

Output:
  --no-pgbench           skip the database-alone reference
  --pgbench-seconds S    seconds of each pgbench run (default: --seconds)
  --write-pgbench        only write the pgbench scripts, generated from the server's statements,
                         into bench/pgbench/ and exit (the bench always runs freshly generated ones
                         and says when the committed copies are out of date)
  --what-if              with steady: also run pgbench on variants of the transaction (without the
                         job inserts; with synchronous_commit off)
  --drain-seconds S      longest wait after each scenario for the payment workers to catch up (default 120)
  --db-cost              per scenario, what the database kept per order: WAL bytes and the growth of
                         each table with its indexes (PostgreSQL; WAL is the whole server's, so run
                         it on a server nobody else writes to)
  --json FILE            write every figure as JSON
  --cpu-prof DIR         start the server processes with node --cpu-prof, write the profiles to DIR
                         and summarize them at the end
  --keep                 keep the scratch databases (and print their names)
  -h, --help             this help

Examples:
  npm run bench
  npm run bench -- --scenarios steady --rate 1000 --seconds 60      (queue lag at 1,000 orders/s)
  npm run bench -- --scenarios steady --cpu-prof /tmp/prof           (profile the server)
  npm run bench -- --embedded --scenarios steady,flash-sale
  npm run bench -- --scenarios steady --no-pgbench --processes 2   (1 process against 2 API + 2 workers)
`;

interface Options {
  scenarios: Scenario[];
  seconds: number;
  warmup: number;
  clients: number;
  rate: number | null;
  databaseUrl: string;
  embedded: boolean;
  url: string | undefined;
  adminEmail: string;
  adminPassword: string;
  apiProcesses: number;
  workerProcesses: number;
  processes: number | null;
  noWorkers: boolean;
  poolSize: number;
  env: Record<string, string>;
  skus: number;
  hotStock: number;
  timeoutMs: number;
  burstStock: number;
  burstRounds: number;
  overloadFactor: number;
  calibrationSeconds: number;
  pgbench: boolean;
  pgbenchSeconds: number;
  drainSeconds: number;
  whatIf: boolean;
  writePgbench: boolean;
  json: string | undefined;
  cpuProf: string | undefined;
  keep: boolean;
  trace: boolean;
  dbCost: boolean;
  rateLimits: boolean;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      scenarios: { type: 'string', default: defaultScenarios.join(',') },
      seconds: { type: 'string', default: '20' },
      warmup: { type: 'string', default: '3' },
      clients: { type: 'string', default: '32' },
      rate: { type: 'string' },
      'database-url': { type: 'string' },
      embedded: { type: 'boolean', default: false },
      url: { type: 'string' },
      'admin-email': { type: 'string' },
      'admin-password': { type: 'string' },
      'api-processes': { type: 'string', default: '1' },
      'worker-processes': { type: 'string', default: '0' },
      processes: { type: 'string' },
      'no-workers': { type: 'boolean', default: false },
      'pool-size': { type: 'string', default: '10' },
      env: { type: 'string', multiple: true, default: [] },
      skus: { type: 'string', default: '1000' },
      'hot-stock': { type: 'string', default: '1000000' },
      'timeout-ms': { type: 'string', default: '30000' },
      'burst-stock': { type: 'string', default: '10' },
      'burst-rounds': { type: 'string', default: '5' },
      'overload-factor': { type: 'string', default: '2' },
      'calibration-seconds': { type: 'string', default: '10' },
      'no-pgbench': { type: 'boolean', default: false },
      'pgbench-seconds': { type: 'string' },
      'what-if': { type: 'boolean', default: false },
      'write-pgbench': { type: 'boolean', default: false },
      'drain-seconds': { type: 'string', default: '120' },
      json: { type: 'string' },
      'cpu-prof': { type: 'string' },
      keep: { type: 'boolean', default: false },
      trace: { type: 'boolean', default: false },
      'no-rate-limits': { type: 'boolean', default: false },
      'db-cost': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(help);
    process.exit(0);
  }
  const int = (name: string, raw: string | undefined, min: number, max: number): number => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max)
      usage(`--${name} must be a whole number from ${min} to ${max} (got "${raw}")`);
    return n;
  };
  const chosen = values
    .scenarios!.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const s of chosen)
    if (!(scenarios as readonly string[]).includes(s))
      usage(`unknown scenario "${s}" (known: ${scenarios.join(', ')})`);
  const env: Record<string, string> = {};
  for (const pair of values.env ?? []) {
    const i = pair.indexOf('=');
    if (i < 1) usage(`--env takes KEY=VALUE (got "${pair}")`);
    env[pair.slice(0, i)] = pair.slice(i + 1);
  }
  const o: Options = {
    scenarios: chosen as Scenario[],
    seconds: int('seconds', values.seconds, 1, 3600),
    warmup: int('warmup', values.warmup, 0, 600),
    clients: int('clients', values.clients, 1, 10_000),
    rate: values.rate === undefined ? null : int('rate', values.rate, 1, 1_000_000),
    databaseUrl: values['database-url'] ?? process.env.DATABASE_URL ?? defaultDatabaseUrl,
    embedded: values.embedded!,
    url: values.url,
    adminEmail: values['admin-email'] ?? 'bench-admin@example.com',
    adminPassword: values['admin-password'] ?? 'bench-admin-password',
    apiProcesses: int('api-processes', values['api-processes'], 1, 16),
    workerProcesses: int('worker-processes', values['worker-processes'], 0, 16),
    processes: values.processes === undefined ? null : int('processes', values.processes, 2, 16),
    noWorkers: values['no-workers']!,
    poolSize: int('pool-size', values['pool-size'], 1, 500),
    env,
    skus: int('skus', values.skus, 10, 99_999),
    hotStock: int('hot-stock', values['hot-stock'], 1, 1_000_000_000),
    timeoutMs: int('timeout-ms', values['timeout-ms'], 10, 600_000),
    burstStock: int('burst-stock', values['burst-stock'], 1, 1_000_000),
    burstRounds: int('burst-rounds', values['burst-rounds'], 1, 100),
    overloadFactor:
      Number(values['overload-factor']) > 0
        ? Number(values['overload-factor'])
        : usage('--overload-factor must be a positive number'),
    calibrationSeconds: int('calibration-seconds', values['calibration-seconds'], 1, 600),
    pgbench: !values['no-pgbench'],
    pgbenchSeconds: int('pgbench-seconds', values['pgbench-seconds'] ?? values.seconds, 1, 3600),
    drainSeconds: int('drain-seconds', values['drain-seconds'], 0, 3600),
    whatIf: values['what-if']!,
    writePgbench: values['write-pgbench']!,
    json: values.json,
    cpuProf: values['cpu-prof'] ? resolve(values['cpu-prof']) : undefined,
    keep: values.keep!,
    trace: values.trace!,
    rateLimits: !values['no-rate-limits'],
    dbCost: values['db-cost']!,
  };
  if (o.trace && o.url) usage('--trace starts the server processes with tracing on: not with --url');
  if (o.dbCost && (o.url || o.embedded))
    usage('--db-cost measures a PostgreSQL scratch database: not with --url or --embedded');
  if (o.url && o.embedded) usage('--url and --embedded exclude each other');
  if (o.url && (!values['admin-email'] || !values['admin-password']))
    usage('--url needs --admin-email and --admin-password');
  if (o.noWorkers && o.workerProcesses > 0) usage('--no-workers and --worker-processes exclude each other');
  if (o.embedded && (o.apiProcesses !== 1 || o.workerProcesses !== 0))
    usage('the embedded database belongs to one process: --embedded runs one start process with its workers');
  return o;
}

function usage(message: string): never {
  process.stderr.write(`bench: ${message}\n(see --help)\n`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------

interface Lag {
  paid: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

interface ScenarioReport {
  scenario: Scenario;
  load: LoadResult;
  pgbench: PgbenchResult[];
  /** HTTP orders/s divided by the reference pgbench tx/s. */
  shareOfDatabase: number | null;
  reference: string | null;
  /** HTTP orders/s divided by pgbench's tx/s on the fixed minimal order (bench/pgbench/minimal-order.sql). */
  shareOfMinimal: number | null;
  lag: Lag | null;
  /** Seconds after the load until no payment was pending (null: not within the bound, or no workers). */
  drainSeconds: number | null;
  drained: boolean;
  /** Seconds until every queue was empty (e-mails, webhook deliveries), and the jobs still waiting if not. */
  queuesDrainSeconds: number | null;
  queueBacklog: number | null;
  peakRss: Record<string, number>;
  cpu: {
    wallSeconds: number;
    server: number | null;
    postgres: number | null;
    loadgen: number | null;
    machineBusy: number | null;
    other: number | null;
  };
  /** Per API process: the share of the window its JavaScript thread ran, and waited runnable for a core. */
  mainThread: Record<string, { onCpu: number; waiting: number }>;
  /** CPU ms per order acknowledged in the window, by process group (server includes its inline workers). */
  /** server = api + workers; workers is null when they run inside the API processes. */
  cpuPerOrder: {
    server: number | null;
    api: number | null;
    workers: number | null;
    postgres: number | null;
    loadgen: number | null;
  };
  checks: { name: string; ok: boolean; detail: string }[];
  /** What PostgreSQL's backends waited on (share of samples), during the HTTP run and each pgbench run. */
  waits: { http: WaitShare[]; pgbench: Record<string, WaitShare[]> };
  /** With --trace: the exports the sink received during the scenario. */
  traces: { requests: number; bytes: number } | null;
  /** With --db-cost: what the database kept per order placed during the scenario (its drain included). */
  dbCost: DbCost | null;
}

interface DbCost {
  orders: number;
  walBytesPerOrder: number;
  tables: { table: string; bytesPerOrder: number; rowsPerOrder: number }[];
}

type DbSnapshot = { wal: string; orders: number; tables: Map<string, { bytes: number; rows: number }> };

/** The server's WAL position, the orders, and every table's size with its indexes and TOAST, and rows. */
async function dbSnapshot(db: Db): Promise<DbSnapshot> {
  // A CHECKPOINT first would not change the WAL written; sizes are taken after the drain.
  const [pos] = await db.query<{ wal: string; orders: number }>(
    'SELECT pg_current_wal_lsn()::text AS wal, (SELECT count(*)::int FROM orders) AS orders',
  );
  const rows = await db.query<{ name: string; bytes: number; rows: number }>(
    `SELECT c.oid::regclass::text AS name, pg_total_relation_size(c.oid)::bigint AS bytes, coalesce(s.n_live_tup, 0)::bigint AS rows
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
      WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'pgboss')`,
  );
  return {
    wal: pos!.wal,
    orders: pos!.orders,
    tables: new Map(rows.map((r) => [r.name, { bytes: Number(r.bytes), rows: Number(r.rows) }])),
  };
}

async function dbCostBetween(db: Db, before: DbSnapshot, after: DbSnapshot): Promise<DbCost | null> {
  const orders = after.orders - before.orders;
  if (orders <= 0) return null;
  const [wal] = await db.query<{ bytes: number }>('SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::bigint AS bytes', [
    after.wal,
    before.wal,
  ]);
  const tables = [...after.tables]
    .map(([table, a]) => {
      const b = before.tables.get(table) ?? { bytes: 0, rows: 0 };
      return { table, bytesPerOrder: (a.bytes - b.bytes) / orders, rowsPerOrder: (a.rows - b.rows) / orders };
    })
    .filter((t) => t.bytesPerOrder !== 0 || t.rowsPerOrder !== 0)
    .sort((x, y) => y.bytesPerOrder - x.bytesPerOrder);
  return { orders, walBytesPerOrder: Number(wal!.bytes) / orders, tables };
}

type WaitShare = { event: string; share: number; perSample: number };

interface Setup {
  mode: 'postgres' | 'embedded' | 'url';
  apiUrls: string[];
  processes: EngineProcess[];
  db: Db | undefined;
  scratch: Scratch | undefined;
  dataDir: string | undefined;
  seeded: Seeded;
  pgbenchDb: Scratch | undefined;
  /** The pgbench scripts to run: generated from the server's own statements for this run. */
  pgbench:
    | { files: Record<keyof typeof pgbenchScripts, string>; steadyText: string; statements: number; drifted: string[] }
    | undefined;
  salt: string;
  /** With --trace: where the server processes export their spans. */
  sink?: OtlpSink | undefined;
}

/** Generates the pgbench scripts from the order path as it is, and compares them with the committed ones. */
async function pgbenchScriptsFor(
  o: Options,
  pgbenchDb: Scratch,
  salt: string,
  log: (line: string) => void,
): Promise<NonNullable<Setup['pgbench']>> {
  const generated = await generateScripts(pgbenchDb.url, salt);
  const dir = await mkdtemp(join(tmpdir(), 'er-pgbench-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const files = {} as Record<keyof typeof pgbenchScripts, string>;
  const drifted: string[] = [];
  files.minimal = join(packageRoot, 'bench', 'pgbench', pgbenchScripts.minimal);
  for (const name of generatedScripts) {
    const committed = join(packageRoot, 'bench', 'pgbench', pgbenchScripts[name]);
    const text = generated[name];
    if ((await readFile(committed, 'utf8').catch(() => '')) !== text) {
      if (o.writePgbench) {
        await writeFile(committed, text);
        log(`wrote ${pgbenchScripts[name]} (generated from the server's statements)`);
      } else {
        drifted.push(pgbenchScripts[name]);
      }
    }
    files[name] = join(dir, pgbenchScripts[name]);
    await writeFile(files[name], text);
  }
  if (drifted.length)
    log(
      `note: bench/pgbench/${drifted.join(', ')} differ from what the server sends now; running freshly generated copies (update them with --write-pgbench)`,
    );
  return { files, steadyText: generated.steady, statements: generated.statements, drifted };
}

async function setUp(o: Options, log: (line: string) => void): Promise<Setup> {
  const salt = randomBytes(6).toString('hex');
  const seed: SeedOptions = { customers: o.clients, skus: o.skus, stock: 100_000_000, hotStock: o.hotStock, salt };
  if (o.url) {
    log(`seeding ${o.url} through its API (${o.skus} SKUs, ${o.clients} customers)`);
    const token = await adminLogin(o.url, o.adminEmail, o.adminPassword);
    const seeded = await seedByApi(o.url, token, seed, salt.slice(0, 6));
    const pgbenchDb =
      o.pgbench && process.argv.some((a) => a.startsWith('--database-url'))
        ? await preparePgbenchDatabase(o.databaseUrl, { ...seed, hotStock: 1_000_000_000 })
        : undefined;
    if (pgbenchDb) cleanups.push(pgbenchDb.drop);
    const pgbench = pgbenchDb ? await pgbenchScriptsFor(o, pgbenchDb, salt, log) : undefined;
    return {
      mode: 'url',
      apiUrls: [o.url],
      processes: [],
      db: undefined,
      scratch: undefined,
      dataDir: undefined,
      seeded,
      pgbenchDb,
      pgbench,
      salt,
    };
  }

  let db: Db;
  let scratch: Scratch | undefined;
  let dataDir: string | undefined;
  let dbEnv: Record<string, string>;
  if (o.embedded) {
    dataDir = await mkdtemp(join(tmpdir(), 'er-bench-'));
    const dir = dataDir;
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    db = await openPglite({ dataDir });
    dbEnv = { DATA_DIR: dataDir };
  } else {
    scratch = await createScratch(o.databaseUrl, 'bench');
    cleanups.push(scratch.drop);
    db = openPostgres(scratch.url, 3);
    const pool = db;
    cleanups.push(() => pool.close());
    dbEnv = { DATABASE_URL: scratch.url, DATABASE_POOL_SIZE: String(o.poolSize) };
  }
  log(
    `seeding ${o.embedded ? `the embedded database in ${dataDir}` : `scratch database ${scratch!.name}`}: ${o.skus} SKUs + the hot SKU, ${o.clients} customers`,
  );
  await migrate(db);
  const seeded = await seedBySql(db, seed);
  await seedAdmin(db, o.adminEmail, o.adminPassword);
  await analyzeSeeded(db);
  if (o.embedded) await db.close(); // the server process takes the data directory over

  const pgbenchDb =
    !o.embedded && o.pgbench
      ? await preparePgbenchDatabase(o.databaseUrl, { ...seed, hotStock: 1_000_000_000 })
      : undefined;
  if (pgbenchDb) cleanups.push(pgbenchDb.drop);
  const pgbench = pgbenchDb ? await pgbenchScriptsFor(o, pgbenchDb, salt, log) : undefined;

  const sink = o.trace ? await startOtlpSink() : undefined;
  if (sink) cleanups.push(() => sink.close());
  const common = {
    ...dbEnv,
    ...(sink ? { OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, OTEL_SERVICE_NAME: 'engine-room-bench' } : {}),
    ADMIN_EMAIL: o.adminEmail,
    ADMIN_PASSWORD: o.adminPassword,
    LOG_LEVEL: 'warn',
    // Every client is one customer from one address: the rate limits count but never refuse
    // (load shedding keeps its defaults: the overload scenario is about it).
    ...(o.rateLimits
      ? { RATE_LIMIT_READ_MAX: '100000000', RATE_LIMIT_WRITE_MAX: '100000000', RATE_LIMIT_AUTH_MAX: '100000000' }
      : { RATE_LIMITS: 'off' }),
    ...(o.workerProcesses > 0 || o.noWorkers ? { WORKERS: 'off' } : {}),
    ...o.env,
  };
  const nodeArgs = o.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${o.cpuProf}`] : [];
  if (o.cpuProf) await mkdir(o.cpuProf, { recursive: true });
  const processes: EngineProcess[] = [];
  try {
    for (let i = 1; i <= o.apiProcesses; i++) {
      const p = startEngineProcess({ role: 'api', label: `api-${i}`, port: await freePort(), env: common, nodeArgs });
      processes.push(p);
      cleanups.push(() => p.kill('SIGKILL'));
      await p.ready;
    }
    for (let i = 1; i <= o.workerProcesses; i++) {
      const p = startEngineProcess({ role: 'worker', label: `worker-${i}`, env: common, nodeArgs });
      processes.push(p);
      cleanups.push(() => p.kill('SIGKILL'));
    }
    await Promise.all(processes.map((p) => p.ready));
  } catch (err) {
    await Promise.all(processes.map((p) => p.kill('SIGKILL')));
    throw err;
  }
  log(
    `started ${processes.map((p) => `${p.spec.label} (pid ${p.pid})`).join(', ')}${o.noWorkers ? ', no job workers' : o.workerProcesses === 0 ? ', job workers inside start' : ''}`,
  );
  return {
    mode: o.embedded ? 'embedded' : 'postgres',
    apiUrls: processes.filter((p) => p.spec.role === 'api').map((p) => p.baseUrl!),
    processes,
    db: o.embedded ? undefined : db,
    scratch,
    dataDir,
    seeded,
    pgbenchDb,
    pgbench,
    salt,
    sink,
  };
}

// ---------------------------------------------------------------------------------------------

function startLoadgen(): ChildProcess {
  return fork(join(here, 'lib', 'loadgen.ts'), ['--loadgen-child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

function runOnLoadgen(
  child: ChildProcess,
  spec: RunSpec,
  onProgress: (p: { elapsed: number; phase: string; orders: number; errors: number; requests: number }) => void,
): Promise<LoadResult> {
  return new Promise((resolvePromise, reject) => {
    const onMessage = (msg: {
      type: string;
      result?: LoadResult;
      error?: string;
      elapsed?: number;
      phase?: string;
      orders?: number;
      errors?: number;
      requests?: number;
    }) => {
      if (msg.type === 'progress') onProgress(msg as never);
      else {
        child.off('message', onMessage);
        child.off('exit', onExit);
        if (msg.type === 'done') resolvePromise(msg.result!);
        else reject(new Error(`the load generator failed: ${msg.error}`));
      }
    };
    const onExit = (code: number | null) => reject(new Error(`the load generator exited (${code})`));
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.send({ type: 'run', spec });
  });
}

/** Admin token of the first API process, for the audit, stock and drain checks. */
async function pendingOrders(apiUrl: string, adminToken: string): Promise<number | undefined> {
  const http = httpClient(apiUrl);
  try {
    const reply = await http.request('GET', '/v1/orders?status=pending_payment&limit=100', {
      token: adminToken,
      timeoutMs: 10_000,
    });
    return reply.status === 200 ? jsonOf<{ data: unknown[] }>(reply)!.data.length : undefined;
  } finally {
    http.close();
  }
}

/**
 * Waits (bounded) until no payment is pending, then until no job of any queue waits or runs (the
 * e-mails come after the payment): the next scenario should not pay for this
 * one's backlog. Answers when each happened, in seconds after the load stopped.
 */
async function waitForDrain(
  s: Setup,
  adminToken: string,
  boundSeconds: number,
): Promise<{ payments: number | null; queues: number | null; backlog: number | null }> {
  const started = Date.now();
  const seconds = () => (Date.now() - started) / 1000;
  let payments: number;
  for (;;) {
    const pending = s.db
      ? Number(
          (await s.db.query<{ n: number }>("SELECT count(*)::int AS n FROM payments WHERE status = 'pending'"))[0]!.n,
        )
      : await pendingOrders(s.apiUrls[0]!, adminToken);
    if (pending === 0) {
      payments = seconds();
      break;
    }
    if (seconds() >= boundSeconds) return { payments: null, queues: null, backlog: null };
    await new Promise((r) => setTimeout(r, 250));
  }
  if (!s.db) return { payments, queues: null, backlog: null };
  for (;;) {
    const [row] = await s.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pgboss.job WHERE state IN ('created', 'retry', 'active') AND start_after <= now()",
    );
    if (Number(row!.n) === 0) return { payments, queues: seconds(), backlog: 0 };
    if (seconds() >= boundSeconds) return { payments, queues: null, backlog: Number(row!.n) };
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function lagOf(db: Db, from: string, to: string): Promise<Lag> {
  const [row] = await db.query<{ paid: number; p50: number; p95: number; p99: number; max: number }>(
    `SELECT count(*)::int AS paid,
            coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), 0) AS p50,
            coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms), 0) AS p95,
            coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), 0) AS p99,
            coalesce(max(ms), 0) AS max
       FROM (SELECT extract(epoch FROM (updated_at - created_at)) * 1000 AS ms FROM orders
              WHERE status = 'paid' AND created_at >= $1 AND created_at <= $2) t`,
    [from, to],
  );
  return {
    paid: Number(row!.paid),
    p50: Number(row!.p50),
    p95: Number(row!.p95),
    p99: Number(row!.p99),
    max: Number(row!.max),
  };
}

/** Orders placed under keys of one scenario (each order is the stored answer of exactly one key). */
async function ordersUnderKeys(db: Db, tag: string, keysPerClient: number[]): Promise<number> {
  const hashes = keysPerClient.flatMap((count, c) =>
    Array.from({ length: count }, (_, n) => createHash('sha256').update(`${tag}-${c}-${n}`).digest()),
  );
  const [row] = await db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM idempotency_keys WHERE key_hash = ANY($1::bytea[]) AND status_code = 201',
    [hashes],
  );
  return Number(row!.n);
}

async function hotStock(
  apiUrl: string,
  adminToken: string,
  sku: string,
): Promise<{ onHand: number; reserved: number } | undefined> {
  const http = httpClient(apiUrl);
  try {
    const reply = await http.request('GET', `/v1/inventory/${encodeURIComponent(sku)}`, {
      token: adminToken,
      timeoutMs: 10_000,
    });
    return reply.status === 200 ? jsonOf<{ onHand: number; reserved: number }>(reply) : undefined;
  } finally {
    http.close();
  }
}

/** flash-burst: per round, exactly the stock placed, each 201 a distinct order, nothing left to sell, every 503 with Retry-After; on PostgreSQL, the orders in the database. */
async function burstChecks(
  s: Setup,
  adminToken: string,
  load: LoadResult,
  stock: number,
): Promise<ScenarioReport['checks']> {
  const checks: ScenarioReport['checks'] = [];
  for (const [i, b] of (load.bursts ?? []).entries()) {
    const level = await hotStock(s.apiUrls[0]!, adminToken, b.sku);
    const [row] = s.db
      ? await s.db.query<{ n: number }>('SELECT count(DISTINCT order_id)::int AS n FROM order_lines WHERE sku = $1', [
          b.sku,
        ])
      : [undefined];
    const inDb = row ? Number(row.n) : null;
    const ok =
      b.placed === stock &&
      b.distinctOrders === b.placed &&
      (level ? level.onHand - level.reserved === 0 || level.onHand === 0 : true) &&
      (inDb === null || inDb === b.placed) &&
      b.shedWithoutRetryAfter === 0;
    checks.push({
      name: `round ${i + 1}: exactly the stock placed, once each`,
      ok,
      detail: `${b.placed} placed (${b.distinctOrders} distinct ids) of ${stock}${inDb !== null ? `, ${inDb} in the database` : ''}${level ? `, on hand ${level.onHand}, reserved ${level.reserved}` : ''}; ${b.shed} x 503 (${b.shedWithoutRetryAfter} without Retry-After)`,
    });
  }
  return checks;
}

/** overload: every 503 has Retry-After; on PostgreSQL, each 201 key stored one order and no 503 key left a trace. */
async function overloadChecks(s: Setup, load: LoadResult): Promise<ScenarioReport['checks']> {
  const f = load.overload;
  if (!f) return [];
  const checks: ScenarioReport['checks'] = [
    {
      name: 'every 503 carries Retry-After',
      ok: f.shedWithoutRetryAfter === 0,
      detail: `${fmtInt(f.shed)} x 503, ${f.shedWithoutRetryAfter} without`,
    },
  ];
  if (s.db) {
    const hashes = (keys: string[]) => keys.map((k) => createHash('sha256').update(k).digest());
    const [stored] = await s.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM idempotency_keys WHERE key_hash = ANY($1::bytea[]) AND status_code = 201',
      [hashes(f.acceptedKeys)],
    );
    const [traced] = await s.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM idempotency_keys WHERE key_hash = ANY($1::bytea[])',
      [hashes(f.shedKeys)],
    );
    checks.push({
      name: 'orders in the database = orders acknowledged; a 503 placed nothing',
      ok: Number(stored!.n) === f.placed && Number(traced!.n) === 0,
      detail: `${fmtInt(Number(stored!.n))} stored for ${fmtInt(f.placed)} acknowledged; ${fmtInt(Number(traced!.n))} of the ${fmtInt(f.shed)} refused keys stored`,
    });
  }
  return checks;
}

const pgbenchFor: Record<Scenario, (keyof typeof pgbenchScripts)[]> = {
  steady: ['steady', 'minimal'],
  'flash-sale': ['hotStockLast', 'hot'],
  'retry-storm': ['steady'],
  mixed: [],
  'flash-burst': [],
  overload: [],
};

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  const out = (s: string) => process.stdout.write(s);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  if (o.processes !== null) return compareLayouts(o, out, log);
  if (o.writePgbench) {
    const salt = randomBytes(6).toString('hex');
    const db = await preparePgbenchDatabase(o.databaseUrl, {
      customers: 1,
      skus: o.skus,
      stock: 100_000_000,
      hotStock: 1_000_000_000,
      salt,
    });
    cleanups.push(db.drop);
    const generated = await pgbenchScriptsFor(o, db, salt, log);
    log(`${generated.statements} statements per order; bench/pgbench/ is current`);
    await cleanUp();
    return 0;
  }
  const startedAt = new Date();
  const loadStart = loadAverage();
  const s = await setUp(o, log);
  const loadgen = startLoadgen();
  cleanups.push(async () => loadgen.kill());
  const reports: ScenarioReport[] = [];
  const memory = memorySampler(() =>
    s.processes.filter((p) => p.running()).map((p) => ({ label: p.spec.label, pid: p.pid })),
  );
  let audit: { ok: boolean; checks: { name: string; ok: boolean; violations: unknown[] }[] } | undefined;
  let postgresVersion = 'n/a';
  let failed = false;
  const tag = `b${Date.now().toString(36)}`;
  const pgbenchCache = new Map<string, { result: PgbenchResult; waits: WaitShare[] }>();
  const windows = new Map<Scenario, LoadResult>();
  try {
    if (s.db)
      postgresVersion = (await s.db.query<{ v: string }>("SELECT current_setting('server_version') AS v"))[0]!.v;
    const adminToken = await adminLogin(s.apiUrls[0]!, o.adminEmail, o.adminPassword);
    const probe = httpClient(s.apiUrls[0]!);
    const messaging =
      (await probe.request('GET', '/v1/conversations', { token: s.seeded.customers[0]!.token })).status !== 404;
    probe.close();

    const scratchName = s.scratch?.name;
    const backendPids = async (db: Db | undefined, name: string | undefined): Promise<number[]> => {
      if (!db || !name) return [];
      return (
        await db.query<{ pid: number }>(
          'SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
          [name],
        )
      ).map((r) => r.pid);
    };

    for (const scenario of o.scenarios) {
      const report: Partial<ScenarioReport> & { scenario: Scenario; checks: ScenarioReport['checks'] } = {
        scenario,
        checks: [],
        pgbench: [],
        waits: { http: [], pgbench: {} },
      };
      // 1. The database alone, with the server idle.
      const runs: {
        script: keyof typeof pgbenchScripts;
        variant?: Awaited<ReturnType<typeof whatIfVariants>>[number];
      }[] = pgbenchFor[scenario].map((script) => ({ script }));
      if (scenario === 'steady' && o.whatIf && s.pgbench)
        runs.push(
          ...(await whatIfVariants(s.pgbench.steadyText)).map((variant) => ({ script: 'steady' as const, variant })),
        );
      for (const { script, variant } of runs) {
        if (!s.pgbenchDb || !s.pgbench) break;
        const cacheKey = `${script}/${variant?.name ?? ''}`;
        let cached = pgbenchCache.get(cacheKey);
        if (!cached) {
          log(
            `${scenario}: pgbench ${pgbenchScripts[script]}${variant ? ` (${variant.name})` : ''}, ${o.clients} clients, ${o.pgbenchSeconds} s`,
          );
          const waits = waitEventSampler(o.databaseUrl, s.pgbenchDb.name);
          waits.start();
          let pgbenchPid: number | undefined;
          const pgbenchDbName = s.pgbenchDb.name;
          const meter = cpuMeter({
            postgres: () => backendPids(s.db, pgbenchDbName),
            pgbench: () => (pgbenchPid ? [pgbenchPid] : []),
          });
          const ticker = setInterval(() => {
            void meter.sample();
          }, 250);
          let result: PgbenchResult;
          try {
            result = await runPgbench({
              url: s.pgbenchDb.url,
              script,
              file: s.pgbench.files[script],
              clients: o.clients,
              seconds: o.pgbenchSeconds,
              vars:
                script === 'steady'
                  ? { nskus: o.skus, salt: s.salt }
                  : script === 'minimal'
                    ? { nskus: o.skus }
                    : { salt: s.salt },
              ...(variant ? { variant } : {}),
              onPid: (pid) => {
                pgbenchPid = pid;
              },
            });
          } finally {
            clearInterval(ticker);
          }
          const used = meter.report().groups;
          if (s.db && result.transactions > 0)
            result.cpuPerTx = {
              postgres: (used.postgres! * 1000) / result.transactions,
              pgbench: (used.pgbench! * 1000) / result.transactions,
            };
          cached = { result, waits: waits.stop() };
          await waits.close();
          pgbenchCache.set(cacheKey, cached);
        }
        report.pgbench!.push(cached.result);
        report.waits!.pgbench[`${cached.result.script}${variant ? ` (${variant.name})` : ''}`] = cached.waits;
      }

      // 2. The HTTP run (and what the database and the trace sink hold before it).
      const dbBefore = o.dbCost && s.db ? await dbSnapshot(s.db) : undefined;
      const tracesBefore = s.sink?.exports();
      const meter = cpuMeter({
        // API and worker processes apart (with --worker-processes); server is their sum.
        api: () => s.processes.filter((p) => p.running() && p.spec.role === 'api').map((p) => p.pid),
        workers: () => s.processes.filter((p) => p.running() && p.spec.role === 'worker').map((p) => p.pid),
        postgres: () => backendPids(s.db, scratchName),
        loadgen: () => (loadgen.pid ? [loadgen.pid] : []),
      });
      const progress = progressLine();
      let last = { t: 0, orders: 0 };
      let rate = 0;
      let measuring = false;
      let schedStart = new Map<string, { at: number; onCpu?: number; waiting?: number }>();
      const sampler = setInterval(() => {
        void meter.sample();
      }, 1000);
      const httpWaits = s.scratch ? waitEventSampler(o.databaseUrl, s.scratch.name) : undefined;
      const spec: RunSpec = {
        scenario,
        targets: s.apiUrls,
        customers: s.seeded.customers,
        clients: o.clients,
        adminToken,
        burst: { stock: o.burstStock, rounds: o.burstRounds },
        overload: { calibrationSeconds: o.calibrationSeconds, factor: o.overloadFactor },
        skus: s.seeded.skus,
        hotSku: s.seeded.hotSku,
        productIds: s.seeded.productIds,
        seconds: o.seconds,
        warmupSeconds: o.warmup,
        rate: o.rate,
        tag: `${tag}-${scenario}`,
        timeoutMs: o.timeoutMs,
        paymentToken: 'tok_ok',
        retryStorm: { abandonShare: 0.3, abandonMaxMs: 20, resendShare: 0.1 },
        messaging,
      };
      let load: LoadResult;
      try {
        load = await runOnLoadgen(loadgen, spec, (p) => {
          if (p.phase === 'measuring' && !measuring) {
            measuring = true;
            schedStart = new Map(
              s.processes.map((proc) => [proc.spec.label, { at: Date.now(), ...schedSeconds(proc.pid) }]),
            );
            httpWaits?.start();
            memory.reset();
            void meter.sample().then(() => meter.reset());
            last = { t: p.elapsed, orders: p.orders };
          }
          if (p.elapsed - last.t >= 1) {
            rate = (p.orders - last.orders) / (p.elapsed - last.t);
            last = { t: p.elapsed, orders: p.orders };
          }
          progress.update(
            `${scenario.padEnd(11)} ${p.elapsed.toFixed(0).padStart(4)} s  ${p.phase.padEnd(9)}  ${fmtInt(rate).padStart(6)} orders/s  ${fmtInt(p.orders).padStart(8)} orders  ${fmtInt(p.errors)} errors`,
          );
        });
      } finally {
        clearInterval(sampler);
        progress.done();
        report.waits!.http = httpWaits?.stop() ?? [];
        await httpWaits?.close();
      }
      await meter.sample();
      const cpu = meter.report();
      report.mainThread = {};
      for (const proc of s.processes) {
        const before = schedStart.get(proc.spec.label);
        const now = schedSeconds(proc.pid);
        if (!before || before.onCpu === undefined || !now) continue;
        const wall = (Date.now() - before.at) / 1000;
        report.mainThread[proc.spec.label] = {
          onCpu: (now.onCpu - before.onCpu) / wall,
          waiting: (now.waiting - before.waiting!) / wall,
        };
      }
      report.peakRss = memory.peaks();
      windows.set(scenario, load);
      report.load = load;
      const g: Record<string, number | undefined> = {
        ...cpu.groups,
        server: (cpu.groups.api ?? 0) + (cpu.groups.workers ?? 0),
      };
      const ours = (g.server ?? 0) + (g.postgres ?? 0) + (g.loadgen ?? 0);
      const wall = cpu.wallSeconds;
      report.cpu = {
        wallSeconds: wall,
        server: s.processes.length ? (g.server ?? 0) / wall : null,
        postgres: s.db ? (g.postgres ?? 0) / wall : null,
        loadgen: (g.loadgen ?? 0) / wall,
        machineBusy: cpu.machineBusy === null ? null : cpu.machineBusy / wall,
        other: cpu.machineBusy === null ? null : Math.max(0, cpu.machineBusy - ours) / wall,
      };
      const perOrder = (seconds: number | undefined) =>
        load.orders > 0 && seconds !== undefined ? (seconds * 1000) / load.orders : null;
      report.cpuPerOrder = {
        server: s.processes.length ? perOrder(g.server) : null,
        api: s.processes.length ? perOrder(g.api) : null,
        workers: o.workerProcesses > 0 ? perOrder(g.workers) : null,
        postgres: s.db ? perOrder(g.postgres) : null,
        loadgen: perOrder(g.loadgen),
      };

      // 3. Let the payment workers catch up, then the scenario's own checks.
      if (o.noWorkers) {
        report.drainSeconds = null;
        report.drained = false;
        report.queuesDrainSeconds = null;
        report.queueBacklog = null;
      } else {
        log(
          `${scenario}: ${fmtInt(load.orders)} orders in ${o.seconds} s; waiting for the workers to empty the queues (at most ${o.drainSeconds} s)`,
        );
        const drain = await waitForDrain(s, adminToken, o.drainSeconds);
        report.drainSeconds = drain.payments;
        report.drained = drain.payments !== null;
        report.queuesDrainSeconds = drain.queues;
        report.queueBacklog = drain.backlog;
      }
      report.dbCost = dbBefore && s.db ? await dbCostBetween(s.db, dbBefore, await dbSnapshot(s.db)) : null;
      const tracesAfter = s.sink?.exports();
      report.traces =
        tracesBefore && tracesAfter
          ? { requests: tracesAfter.requests - tracesBefore.requests, bytes: tracesAfter.bytes - tracesBefore.bytes }
          : null;
      if (load.idMismatches > 0)
        report.checks.push({
          name: 'retries of one key answered one order',
          ok: false,
          detail: `${load.idMismatches} answers named another order`,
        });
      if (scenario === 'retry-storm') {
        report.checks.push({
          name: 'retries of one key answered one order',
          ok: load.idMismatches === 0,
          detail: `${fmtInt(load.replays)} replays, ${fmtInt(load.abandoned)} requests abandoned and resent`,
        });
        if (s.db) {
          const placed = await ordersUnderKeys(s.db, spec.tag, load.keysPerClient);
          report.checks.push({
            name: 'orders in the database = orders acknowledged',
            ok: placed === load.ackedOrders,
            detail: `${fmtInt(placed)} in the database, ${fmtInt(load.ackedOrders)} acknowledged`,
          });
        }
      }
      if (scenario === 'flash-sale') {
        const level = await hotStock(s.apiUrls[0]!, adminToken, s.seeded.hotSku);
        if (level) {
          const taken = o.hotStock - level.onHand + level.reserved;
          report.checks.push({
            name: 'the hot SKU is not oversold',
            ok: taken === load.ackedOrders && taken <= o.hotStock && level.onHand >= level.reserved,
            detail: `${fmtInt(taken)} units sold or reserved of ${fmtInt(o.hotStock)}, ${fmtInt(load.ackedOrders)} orders acknowledged${load.soldOutAt !== null ? `, sold out ${fmtSeconds(load.soldOutAt)} into the window` : ''}`,
          });
        }
      }
      if (scenario === 'flash-burst') report.checks.push(...(await burstChecks(s, adminToken, load, o.burstStock)));
      if (scenario === 'overload') report.checks.push(...(await overloadChecks(s, load)));
      if (report.checks.some((c) => !c.ok)) failed = true;
      reports.push(report as ScenarioReport);
    }

    log('running the audit (GET /v1/admin/audit)');
    const http = httpClient(s.apiUrls[0]!);
    const reply = await http.request('GET', '/v1/admin/audit', { token: adminToken, timeoutMs: 600_000 });
    http.close();
    audit = jsonOf(reply);
    if (!audit || !audit.ok) failed = true;
  } finally {
    loadgen.send({ type: 'exit' });
    memory.stop();
    await Promise.all(s.processes.map((p) => p.kill('SIGTERM')));
  }

  // Queue lag from the server's own timestamps (for the embedded database, now that it is free).
  const lagDb = s.db ?? (s.dataDir ? await openPglite({ dataDir: s.dataDir }) : undefined);
  if (lagDb) {
    for (const r of reports) {
      if (!o.noWorkers) r.lag = await lagOf(lagDb, r.load.measuredFrom, r.load.measuredTo);
      if (s.mode === 'embedded' && r.scenario === 'retry-storm') {
        const placed = await ordersUnderKeys(lagDb, `${tag}-retry-storm`, r.load.keysPerClient);
        r.checks.push({
          name: 'orders in the database = orders acknowledged',
          ok: placed === r.load.ackedOrders,
          detail: `${fmtInt(placed)} in the database, ${fmtInt(r.load.ackedOrders)} acknowledged`,
        });
        if (placed !== r.load.ackedOrders) failed = true;
      }
    }
    if (s.mode === 'embedded')
      postgresVersion = `PGlite (${(await lagDb.query<{ v: string }>("SELECT current_setting('server_version') AS v"))[0]!.v})`;
    await lagDb.close();
  }
  for (const r of reports) {
    r.reference = r.pgbench[0] ? r.pgbench[0].script : null;
    r.shareOfDatabase = r.pgbench[0] ? r.load.ordersPerSecond / r.pgbench[0].tps : null;
    const minimal = r.pgbench.find((p) => p.script.endsWith(pgbenchScripts.minimal) && !p.variant);
    r.shareOfMinimal = minimal ? r.load.ordersPerSecond / minimal.tps : null;
    r.lag ??= null;
  }

  // ---- Output
  const where =
    s.mode === 'url'
      ? `the Engine Room at ${o.url}`
      : s.mode === 'embedded'
        ? 'the embedded database (PGlite), one start process with its workers'
        : `PostgreSQL ${postgresVersion}, ${o.apiProcesses} API process${o.apiProcesses > 1 ? 'es' : ''}${o.noWorkers ? ' and no job workers (WORKERS=off)' : o.workerProcesses ? ` (WORKERS=off) + ${o.workerProcesses} worker process${o.workerProcesses > 1 ? 'es' : ''}` : ' with inline workers'}, pool ${o.poolSize}`;
  out(
    `\nEngine Room bench: ${o.clients} clients, ${o.seconds} s per scenario (after ${o.warmup} s warm-up)${o.rate ? `, paced at ${fmtInt(o.rate)}/s` : ''}\n`,
  );
  out(`${where}; ${cpus().length} CPUs, load average ${loadStart} at the start\n`);
  if (s.pgbench)
    out(
      `pgbench reference: the ${s.pgbench.statements} statements the server sent for one order in this run (authentication lookup, BEGIN ... COMMIT)${s.pgbench.drifted.length ? `; the committed bench/pgbench/${s.pgbench.drifted.join(', ')} are out of date (--write-pgbench)` : ''}\n`,
    );
  out('\n');
  for (const r of reports) out(scenarioBlock(r, o) + '\n');
  out(summaryTable(reports));
  if (s.mode !== 'url') out('\n' + targetsTable(reports, o));
  out(
    '\n' +
      (audit
        ? `audit: ${audit.ok ? 'passed' : 'FAILED'} (${audit.checks.filter((c) => c.ok).length}/${audit.checks.length} checks)\n` +
          audit.checks
            .filter((c) => !c.ok)
            .map((c) => `  FAIL ${c.name}: ${JSON.stringify(c.violations.slice(0, 3))}\n`)
            .join('')
        : 'audit: not run\n'),
  );

  let profiles: ReturnType<typeof summarize>[] = [];
  if (o.cpuProf) {
    profiles = profilesIn(o.cpuProf).map((f) => summarize(f, 20));
    out('\nCPU profiles of the server processes:\n\n' + profiles.map(formatSummary).join('\n'));
  }

  if (o.json) {
    await writeFile(
      o.json,
      JSON.stringify(
        {
          startedAt: startedAt.toISOString(),
          endedAt: new Date().toISOString(),
          machine: {
            cpus: cpus().length,
            node: process.version,
            database: postgresVersion,
            loadAverageAtStart: loadStart,
            loadAverageAtEnd: loadAverage(),
          },
          options: { ...o, adminPassword: undefined },
          setup: {
            mode: s.mode,
            processes: s.processes.map((p) => p.spec.label),
            apiUrls: s.apiUrls,
            pgbenchStatements: s.pgbench?.statements,
            pgbenchDrifted: s.pgbench?.drifted,
          },
          scenarios: reports,
          audit,
          profiles,
        },
        null,
        2,
      ) + '\n',
    );
    log(`results written to ${o.json}`);
  }

  if (o.keep) {
    cleanups.length = 0;
    await s.db?.close().catch(() => {});
    log(`kept: ${[s.scratch?.name, s.pgbenchDb?.name, s.dataDir].filter(Boolean).join(', ')}`);
  } else {
    await cleanUp();
  }
  if (failed) out('\nbench: a correctness check FAILED (see above)\n');
  return failed ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// Presentation

function latencyCells(l: Percentiles): string[] {
  return [fmtMs(l.p50), fmtMs(l.p95), fmtMs(l.p99), fmtMs(l.max)];
}

function statusText(statuses: Record<string, number>): string {
  return (
    Object.entries(statuses)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k}: ${fmtInt(n)}`)
      .join(', ') || 'none'
  );
}

function scenarioBlock(r: ScenarioReport, o: Options): string {
  const l = r.load;
  const lines = [`${r.scenario} (${l.clients} clients, ${l.measuredSeconds} s measured)`];
  const row = (k: string, v: string) => lines.push(`  ${k.padEnd(18)} ${v}`);
  row(
    'orders/s',
    `${fmtInt(l.ordersPerSecond)}${r.scenario === 'mixed' ? `   (all requests: ${fmtInt(l.requestsPerSecond)}/s)` : ''}`,
  );
  for (const p of r.pgbench)
    row(
      p.variant ? 'pgbench what-if' : 'pgbench',
      `${fmtInt(p.tps)} tx/s  ${p.script}${p.variant ? ` ${p.variant}` : ''}, ${p.clients} clients, ${p.seconds} s${p.failed ? `, ${p.failed} failed` : ''}`,
    );
  if (r.shareOfDatabase !== null)
    row('HTTP / database', `${fmtPct(r.shareOfDatabase)} of what the database alone does (${r.reference})`);
  if (r.shareOfMinimal !== null)
    row(
      'HTTP / minimal',
      `${fmtPct(r.shareOfMinimal)} of the least an order must do (bench/pgbench/${pgbenchScripts.minimal}: 6 statements)`,
    );
  row(
    'latency ms',
    `p50 ${fmtMs(l.latency.p50)}  p95 ${fmtMs(l.latency.p95)}  p99 ${fmtMs(l.latency.p99)}  max ${fmtMs(l.latency.max)}  (${fmtInt(l.latency.count)} answers)`,
  );
  row('status codes', statusText(l.statuses));
  for (const [i, b] of (l.bursts ?? []).entries()) {
    row(
      `  round ${i + 1}`,
      `${fmtInt(b.buyers)} buyers: ${b.placed} placed, ${fmtInt(b.outOfStock)} out_of_stock, ${fmtInt(b.shed)} x 503${b.shed ? ` (${statusText(b.shedReasons)}; answered p50 ${fmtMs(b.refused.p50)} ms, max ${fmtMs(b.refused.max)} ms; served max ${fmtMs(b.served.max)} ms)` : ''}${Object.keys(b.other).length ? `, ${statusText(b.other)}` : ''}; p50 ${fmtMs(b.latency.p50)} ms, p99 ${fmtMs(b.latency.p99)} ms, max ${fmtMs(b.latency.max)} ms; all answered in ${fmtSeconds(b.allAnsweredMs / 1000)}`,
    );
  }
  const f = l.overload;
  if (f) {
    row('best rate', `${fmtInt(f.bestRate)} orders/s (closed loop, ${l.clients} clients, ${f.calibrationSeconds} s)`);
    row('offered', `${fmtInt(f.offeredRate)} arrivals/s for ${f.seconds} s (${fmtInt(f.arrivals)} orders, open loop)`);
    row(
      'placed',
      `${fmtInt(f.placed)} = ${fmtInt(f.placedRate)} orders/s (${fmtPct(f.placedRate / Math.max(1, f.bestRate))} of the best); accepted p50 ${fmtMs(f.accepted.p50)} ms, p99 ${fmtMs(f.accepted.p99)} ms, max ${fmtMs(f.accepted.max)} ms`,
    );
    row(
      'shed',
      `${fmtInt(f.shed)} x 503 (${fmtPct(f.shed / Math.max(1, f.arrivals))} of arrivals), answered in p50 ${fmtMs(f.shedAnswer.p50)} ms, p99 ${fmtMs(f.shedAnswer.p99)} ms${Object.keys(f.other).length ? `; other: ${statusText(f.other)}` : ''}`,
    );
  }
  if (r.scenario === 'mixed') {
    for (const [op, st] of Object.entries(l.ops))
      row(`  ${op}`, `${fmtInt(st.count)} requests, p50 ${fmtMs(st.latency.p50)} ms, p99 ${fmtMs(st.latency.p99)} ms`);
  }
  if (r.lag)
    row(
      'queue lag',
      `placed -> paid p50 ${fmtSeconds(r.lag.p50 / 1000)}  p95 ${fmtSeconds(r.lag.p95 / 1000)}  p99 ${fmtSeconds(r.lag.p99 / 1000)}  max ${fmtSeconds(r.lag.max / 1000)}  (${fmtInt(r.lag.paid)} paid orders)`,
    );
  row(
    'workers drained',
    o.noWorkers
      ? 'n/a (no workers)'
      : !r.drained
        ? `payments NOT within ${o.drainSeconds} s`
        : `payments ${fmtSeconds(r.drainSeconds!)} after the load stopped${r.queuesDrainSeconds !== null ? `, every queue (e-mail, webhooks) ${fmtSeconds(r.queuesDrainSeconds)}` : r.queueBacklog !== null ? `; ${fmtInt(r.queueBacklog)} jobs still waiting after ${o.drainSeconds} s` : ''}`,
  );
  row(
    'peak RSS',
    Object.entries(r.peakRss)
      .map(([k, v]) => `${k} ${fmtMb(v)}`)
      .join(', ') || 'n/a',
  );
  const c = r.cpu;
  row(
    'CPU (1 core = 100%)',
    `server ${fmtPct(c.server)}, postgres backends ${fmtPct(c.postgres)}, load generator ${fmtPct(c.loadgen)}, rest of the machine ${fmtPct(c.other)} (busy ${fmtPct(c.machineBusy)} of ${cpus().length * 100}%)`,
  );
  const threads = Object.entries(r.mainThread ?? {});
  if (threads.length)
    row(
      'JS thread',
      threads
        .map(
          ([label, t]) =>
            `${label} on a CPU ${fmtPct(t.onCpu)} of the time, runnable but waiting for one ${fmtPct(t.waiting)}`,
        )
        .join('; '),
    );
  const ms = (x: number | null | undefined) => (x === null || x === undefined ? 'n/a' : `${x.toFixed(2)} ms`);
  if (r.scenario !== 'mixed')
    row(
      'CPU per order',
      `server ${ms(r.cpuPerOrder.server)}${r.cpuPerOrder.workers !== null ? ` (API ${ms(r.cpuPerOrder.api)}, workers ${ms(r.cpuPerOrder.workers)})` : ''}, postgres ${ms(r.cpuPerOrder.postgres)}, load generator ${ms(r.cpuPerOrder.loadgen)}${r.cpuPerOrder.server !== null && !o.noWorkers ? ' (server and postgres include the payment work done meanwhile)' : ''}`,
    );
  for (const p of r.pgbench)
    if (p.cpuPerTx)
      row(
        '',
        `pgbench ${p.script.replace('bench/pgbench/', '')}${p.variant ? ` ${p.variant}` : ''}: postgres ${ms(p.cpuPerTx.postgres)}, pgbench ${ms(p.cpuPerTx.pgbench)} per transaction`,
      );
  const waits = (w: WaitShare[]) =>
    w
      .slice(0, 4)
      .map((x) => `${x.event} ${fmtPct(x.share)}`)
      .join(', ') || 'n/a';
  if (r.waits.http.length) row('postgres waits', `HTTP run: ${waits(r.waits.http)}`);
  for (const [script, w] of Object.entries(r.waits.pgbench))
    row('', `pgbench ${script.replace('bench/pgbench/', '')}: ${waits(w)}`);
  const lg = l.loadgen;
  const lgBusy = lg.cpuSeconds / lg.wallSeconds;
  row(
    'load generator',
    `${fmtPct(lgBusy)} of a core, event loop ${fmtPct(lg.eventLoopUtilization)} busy, delay p99 ${fmtMs(lg.eventLoopDelayP99Ms)} ms${lg.eventLoopUtilization > 0.8 ? "  <- near saturation: the figures may be the generator's limit" : ' (not the bottleneck)'}`,
  );
  if (c.other !== null && c.other > 0.15)
    row(
      'warning',
      `${fmtPct(c.other)} of a core went to other work on this machine: figures are lower than on a quiet one`,
    );
  if (r.traces)
    row(
      'traces',
      `${fmtInt(r.traces.requests)} OTLP exports, ${fmtMb(r.traces.bytes)} to the sink${l.orders > 0 ? ` (${fmtInt(r.traces.bytes / l.orders)} bytes per order)` : ''}`,
    );
  if (r.dbCost) {
    const d = r.dbCost;
    const kb = (b: number) => `${(b / 1024).toFixed(2)} KB`;
    row(
      'database per order',
      `WAL ${kb(d.walBytesPerOrder)}; tables with indexes grew ${kb(d.tables.reduce((sum, t) => sum + Math.max(0, t.bytesPerOrder), 0))} (${fmtInt(d.orders)} orders, drain included)`,
    );
    for (const t of d.tables.slice(0, 14))
      row(
        '',
        `${t.table.padEnd(34)} ${kb(t.bytesPerOrder).padStart(10)}  ${t.rowsPerOrder.toFixed(2).padStart(6)} rows`,
      );
  }
  for (const check of r.checks) row(check.ok ? 'check ok' : 'check FAILED', `${check.name}: ${check.detail}`);
  for (const note of l.notes) row('note', note);
  return lines.join('\n') + '\n';
}

function summaryTable(reports: ScenarioReport[]): string {
  const rows = [
    [
      'scenario',
      'orders/s',
      'p50 ms',
      'p95 ms',
      'p99 ms',
      'max ms',
      'pgbench tx/s',
      'HTTP/DB',
      'lag p99',
      'peak RSS',
      'status codes',
    ],
  ];
  for (const r of reports) {
    rows.push([
      r.scenario,
      fmtInt(r.load.ordersPerSecond),
      ...latencyCells(r.load.latency),
      r.pgbench[0] ? fmtInt(r.pgbench[0].tps) : '-',
      r.shareOfDatabase === null ? '-' : fmtPct(r.shareOfDatabase),
      r.lag ? fmtSeconds(r.lag.p99 / 1000) : '-',
      fmtMb(Math.max(0, ...Object.values(r.peakRss))),
      statusText(r.load.statuses),
    ]);
  }
  return table(rows);
}

function targetsTable(reports: ScenarioReport[], o: Options): string {
  const rows = [['target (issues 6, 15 and 31)', 'measured', 'met']];
  const yes = (b: boolean) => (b ? 'yes' : 'NO');
  const steady = reports.find((r) => r.scenario === 'steady');
  if (steady) {
    rows.push([
      'steady: >= 2,000 orders/s',
      fmtInt(steady.load.ordersPerSecond),
      yes(steady.load.ordersPerSecond >= 2000),
    ]);
    if (steady.shareOfDatabase !== null)
      rows.push(['steady: >= 40% of pgbench', fmtPct(steady.shareOfDatabase), yes(steady.shareOfDatabase >= 0.4)]);
    if (steady.shareOfMinimal !== null)
      rows.push([
        'steady: >= 40% of pgbench minimal-order.sql',
        fmtPct(steady.shareOfMinimal),
        yes(steady.shareOfMinimal >= 0.4),
      ]);
    rows.push(['steady: p99 < 50 ms', `${fmtMs(steady.load.latency.p99)} ms`, yes(steady.load.latency.p99 < 50)]);
  }
  const flash = reports.find((r) => r.scenario === 'flash-sale');
  if (flash && flash.pgbench[0]) {
    rows.push([
      'flash-sale: >= pgbench hot row, stock UPDATE last',
      `${fmtInt(flash.load.ordersPerSecond)} vs ${fmtInt(flash.pgbench[0].tps)}`,
      yes(flash.load.ordersPerSecond >= flash.pgbench[0].tps),
    ]);
  }
  const burst = reports.find((r) => r.scenario === 'flash-burst');
  if (burst?.load.bursts?.length) {
    const b = burst.load.bursts;
    const median = (xs: number[]) => percentiles(xs).p50;
    const p99 = median(b.map((x) => x.latency.p99));
    const shed = b.reduce((n, x) => n + x.shed, 0);
    const buyers = b[0]!.buyers;
    const p99Target = buyers <= 200 ? 300 : 1000;
    rows.push([
      `flash-burst ${fmtInt(buyers)} buyers: 0 x 503`,
      `${fmtInt(shed)} in ${b.length} rounds`,
      buyers > 1000 ? '- (503s only past the target)' : yes(shed === 0),
    ]);
    rows.push([
      `flash-burst ${fmtInt(buyers)} buyers: exactly the stock placed`,
      b.map((x) => x.placed).join(', '),
      yes(burst.checks.every((c) => c.ok)),
    ]);
    rows.push([
      `flash-burst ${fmtInt(buyers)} buyers: p99 < ${fmtInt(p99Target)} ms (median of rounds)`,
      `${fmtMs(p99)} ms`,
      buyers > 1000 ? '-' : yes(p99 < p99Target),
    ]);
  }
  const over = reports.find((r) => r.scenario === 'overload')?.load.overload;
  if (over) {
    rows.push(['overload: accepted p99 < 1 s', `${fmtMs(over.accepted.p99)} ms`, yes(over.accepted.p99 < 1000)]);
    rows.push([
      'overload: excess refused 503 + Retry-After',
      `${fmtInt(over.shed)} (${over.shedWithoutRetryAfter} without)`,
      yes(over.shed > 0 && over.shedWithoutRetryAfter === 0),
    ]);
    rows.push([
      'overload: placed within 10% of the best',
      `${fmtInt(over.placedRate)} vs ${fmtInt(over.bestRate)} orders/s`,
      yes(over.placedRate >= 0.9 * over.bestRate),
    ]);
  }
  const paced = reports.find((r) => r.scenario === 'steady' && o.rate !== null && o.rate >= 1000 && o.seconds >= 60);
  if (paced?.lag)
    rows.push([
      `lag p99 < 2 s at ${fmtInt(o.rate!)}/s for ${o.seconds} s`,
      `${fmtSeconds(paced.lag.p99 / 1000)} at ${fmtInt(paced.load.ordersPerSecond)}/s`,
      yes(paced.lag.p99 < 2000 && paced.load.ordersPerSecond >= 0.95 * 1000),
    ]);
  else rows.push(['lag p99 < 2 s at 1,000 orders/s for 60 s', 'not in this run (1)', '-']);
  const peak = Math.max(0, ...reports.flatMap((r) => Object.values(r.peakRss)));
  if (peak > 0) rows.push(['no process above 250 MB resident', fmtMb(peak), yes(peak <= 250 * 1024 * 1024)]);
  return table(rows) + (paced?.lag ? '' : '(1) npm run bench -- --scenarios steady --rate 1000 --seconds 60\n');
}

process.once('SIGINT', () => {
  process.stderr.write('\nbench: interrupted, cleaning up\n');
  void cleanUp().finally(() => process.exit(130));
});

/**
 * --processes N: the same bench in two layouts, each a run of this script of its own (fresh
 * databases, nothing shared), then the many-process figures against the one-process ones.
 */
async function compareLayouts(o: Options, out: (s: string) => void, log: (line: string) => void): Promise<number> {
  if (o.embedded || o.url) usage('--processes starts its own processes on PostgreSQL: not with --embedded or --url');
  const dir = await mkdtemp(join(tmpdir(), 'er-bench-layouts-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const passOn: string[] = [];
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const takesValue = ['--processes', '--api-processes', '--worker-processes', '--json'];
    if (takesValue.includes(a)) {
      i++;
      continue;
    }
    if (takesValue.some((t) => a.startsWith(`${t}=`))) continue;
    passOn.push(a);
  }
  const layouts = [
    { name: 'one process (workers inside)', args: [] as string[] },
    {
      name: `${o.processes} API + ${o.processes} worker processes`,
      args: ['--api-processes', String(o.processes), '--worker-processes', String(o.processes)],
    },
  ];
  const results: { name: string; exit: number; report: { scenarios: ScenarioReport[] } | null }[] = [];
  for (const [n, layout] of layouts.entries()) {
    log(`\n== layout ${n + 1} of 2: ${layout.name}`);
    const file = join(dir, `layout-${n}.json`);
    const child = fork(fileURLToPath(import.meta.url), [...passOn, ...layout.args, '--json', file], {
      stdio: 'inherit',
    });
    const exit = await new Promise<number>((done) => child.on('exit', (code) => done(code ?? 1)));
    const report = await readFile(file, 'utf8').then(
      (t) => JSON.parse(t) as { scenarios: ScenarioReport[] },
      () => null,
    );
    results.push({ name: layout.name, exit, report });
  }
  const [one, many] = results as [(typeof results)[0], (typeof results)[0]];
  const rows: string[][] = [
    [
      'scenario',
      'one: orders/s',
      'many: orders/s',
      'many / one',
      'one: p99 ms',
      'many: p99 ms',
      'many: placed -> paid p99',
      'one: CPU ms per order API / workers / postgres',
      'many: same',
      'peak RSS one / many',
    ],
  ];
  for (const r of one.report?.scenarios ?? []) {
    const m = many.report?.scenarios.find((x) => x.scenario === r.scenario);
    if (!m) continue;
    const ms = (v: number | null) => (v === null ? 'n/a' : fmtMs(v));
    const cpu = (x: ScenarioReport) =>
      `${ms(x.cpuPerOrder.api)} / ${x.cpuPerOrder.workers === null ? 'inside' : ms(x.cpuPerOrder.workers)} / ${ms(x.cpuPerOrder.postgres)}`;
    const peak = (x: ScenarioReport) => fmtMb(Math.max(0, ...Object.values(x.peakRss)));
    rows.push([
      r.scenario,
      fmtInt(r.load.ordersPerSecond),
      fmtInt(m.load.ordersPerSecond),
      fmtPct(r.load.ordersPerSecond > 0 ? m.load.ordersPerSecond / r.load.ordersPerSecond : null),
      fmtMs(r.load.latency.p99),
      fmtMs(m.load.latency.p99),
      m.lag ? fmtSeconds(m.lag.p99 / 1000) : '-',
      cpu(r),
      cpu(m),
      `${peak(r)} / ${peak(m)}`,
    ]);
  }
  out(`\nlayouts compared (each its own run): one process, then ${many.name}\n`);
  out(table(rows) + '\n');
  out(`target (issue 15): many / one >= 90%, placed -> paid p99 < 1 s\n`);
  if (o.json) {
    await writeFile(
      o.json,
      JSON.stringify({ layouts: results.map((r) => ({ name: r.name, exit: r.exit, ...r.report })) }, null, 2) + '\n',
    );
    log(`results written to ${o.json}`);
  }
  await cleanUp();
  return results.every((r) => r.exit === 0) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  async (err: Error) => {
    process.stderr.write(`bench: ${err.stack ?? String(err)}\n`);
    await cleanUp();
    process.exit(1);
  },
);
