#!/usr/bin/env node
// The engine-room command. Each command is a small function; configuration comes from the
// environment (see the README) and is validated before anything starts.
//
// Start-up time matters here (a warm `npm start` should answer /healthz within 2 s): Node keeps the
// compiled code of every module, TypeScript already stripped, in its compile cache, and the heavy
// modules are imported only by the command that needs them, so --help, --version and a bad
// configuration answer at once.
import module from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { packageRoot } from './platform/paths.ts';

module.enableCompileCache?.();

const version: string = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')).version;

const environment = `Configuration is read from the environment: PORT (3000), HOST (127.0.0.1),
DATABASE_URL (unset: embedded PostgreSQL in DATA_DIR, default ./.engine-room),
ADMIN_EMAIL, ADMIN_PASSWORD, LOG_LEVEL (info), CORS_ORIGINS, and more; see README.md.
`;

const help = `engine-room ${version}: an order and payment backend on PostgreSQL

Usage: engine-room <command> [options]

Commands:
  start                 Run the HTTP API, and the job workers unless WORKERS=off
  worker                Run only job workers (needs DATABASE_URL; run as many as you like)
  migrate               Apply pending database migrations and exit
  seed --demo [--force] Fill an empty database with a small demo shop
  seed --orders N --customers M
                        Add N orders of M new customers, fast (to measure at size)
  audit [--json]        Check that the books add up; exits 1 when a check fails
  jobs list [--queue Q] [--limit N]
                        Show dead-lettered jobs (those that failed every retry)
  jobs retry <id>       Send a dead-lettered job back to its queue
  drill [--url U]       Stage a short incident against a running engine (sandbox processor), to
                        watch on the console; see engine-room drill --help
  help [command]        Show this help, or a command's

Options:
  -h, --help     Show this help (after a command: that command's)
  -v, --version  Print the version
  --json         Machine-readable output (audit, jobs list)

${environment}`;

const commandHelp: Record<string, string> = {
  start: `Usage: engine-room start

Migrates the database, creates the first admin on an empty one (from ADMIN_EMAIL and
ADMIN_PASSWORD, or with a generated password that is printed once), and serves the HTTP API on
HOST:PORT until SIGTERM or SIGINT, which let requests in flight finish first. Runs the job workers
too, unless WORKERS=off. Before opening the database it checks that the port is free and that
DATA_DIR (or DATABASE_URL) is usable, and says what to change in one line when not.

${environment}`,
  worker: `Usage: engine-room worker

Runs only the job workers (payments, refunds, webhooks, mail, schedules), for PostgreSQL deployments
whose API processes run with WORKERS=off. Needs DATABASE_URL; run as many as you like.

${environment}`,
  migrate: `Usage: engine-room migrate

Applies the pending migrations in one transaction and exits: 0 when the database is current.
\`start\` does this too; run it separately to migrate before rolling out new code.

${environment}`,
  seed: `Usage: engine-room seed --demo [--force]
       engine-room seed --orders N [--customers M]

Fills the database with a small demo shop, through the same service rules as the API: products
with variants and stock, three customers, orders in every status (paid, fulfilled, payment failed,
cancelled and refunded, and one left pending payment, charged when the workers next run), two
conversations and a (disabled) webhook endpoint. Creates the first admin if the database has none.
Refuses a database that has orders, unless --force. On the embedded database, stop the server first.

  --demo    The demo shop
  --force   Add the demo shop even though the database has orders

--orders N --customers M writes N orders (default 100000) of M new customers (default 10000),
spread over the past year, with 500 new SKUs, set-based and in batches (progress is shown): paid,
fulfilled, declined or cancelled, each with its payment, sandbox charge, ledger capture, stock
movements and status history, so the audit passes. For measuring lists at size (npm run
bench:lists); it adds to what is there.

${environment}`,
  audit: `Usage: engine-room audit [--json]

Checks that the books add up: the ledger balances, every paid order was charged exactly its total
once, refunds, stock levels, and what the processor charged (the checks of GET /v1/admin/audit).
Exits 0 when every check passes, 1 otherwise. On the embedded database, stop the server first.

  --json    Print the result as JSON

${environment}`,
  jobs: `Usage: engine-room jobs list [--queue Q] [--limit N] [--json]
       engine-room jobs retry <id>

list    Shows dead-lettered jobs: those that failed every retry (newest first, 20 by default).
retry   Sends one back to its queue, as a new job.

  --queue Q   Only the jobs of queue Q (charges: payments.charge)
  --limit N   At most N jobs (1 to 1000)
  --json      Print the jobs as JSON

${environment}`,
};

class UsageError extends Error {}

async function runUntilSignal(start: () => Promise<{ stop: () => Promise<void> }>): Promise<void> {
  // Listen for signals before starting: a Ctrl-C during the first start (initdb, migrations) then
  // waits for the database to be consistent and closes it, rather than killing PGlite mid-write.
  // A second signal falls through to the default action, for when someone really wants out.
  const state: { stop?: () => Promise<void>; signalled: boolean } = { signalled: false };
  const finish = (stop: () => Promise<void>) =>
    stop().then(
      () => process.exit(0),
      (err) => {
        process.stderr.write(`stop failed: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  const onSignal = (signal: string) => {
    state.signalled = true;
    process.stderr.write(`\n${signal} received, stopping\n`);
    // finish() handles its own failure and exits the process either way.
    if (state.stop) void finish(state.stop);
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  state.stop = (await start()).stop;
  if (state.signalled) void finish(state.stop);
}

async function quietLogger() {
  const [{ pino }, { loggerOptions }] = await Promise.all([import('pino'), import('./platform/log.ts')]);
  return pino(loggerOptions('warn'));
}

async function runMigrate(config: Readonly<Config>): Promise<void> {
  const [{ pino }, { loggerOptions }, { openAndMigrate }] = await Promise.all([
    import('pino'),
    import('./platform/log.ts'),
    import('./server.ts'),
  ]);
  const db = await openAndMigrate(config, pino(loggerOptions(config.logLevel)));
  await db.close();
  process.stderr.write('migrations are current\n');
}

async function runAudit(config: Readonly<Config>, json: boolean): Promise<number> {
  const [{ openAndMigrate }, { runAudit: audit }] = await Promise.all([
    import('./server.ts'),
    import('./modules/ledger/audit.ts'),
  ]);
  const db = await openAndMigrate(config, await quietLogger());
  try {
    const result = await audit(db, { paymentProvider: config.paymentProvider });
    if (json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    else {
      for (const check of result.checks) {
        const outcome = check.skipped ? check.skipped : check.ok ? '' : `${check.violations.length} shown`;
        process.stdout.write(
          `${check.skipped ? 'skip' : check.ok ? 'ok  ' : 'FAIL'}  ${check.name}${outcome ? ` (${outcome})` : ''}\n`,
        );
        for (const v of check.violations) process.stdout.write(`        ${JSON.stringify(v)}\n`);
      }
      process.stdout.write(result.ok ? 'audit passed\n' : 'audit FAILED\n');
    }
    return result.ok ? 0 : 1;
  } finally {
    await db.close();
  }
}

async function runJobs(
  config: Readonly<Config>,
  args: string[],
  options: { json: boolean; limit: number; queue: string | undefined },
): Promise<number> {
  const [sub, id] = args;
  if (sub !== 'list' && sub !== 'retry')
    throw new UsageError(`jobs needs list or retry${sub ? ` (got "${sub}")` : ''}`);
  if (sub === 'retry' && !id)
    throw new UsageError('jobs retry needs the id of a dead-lettered job (see engine-room jobs list)');
  const [{ openAndMigrate }, { listFailedJobs, retryJob }] = await Promise.all([
    import('./server.ts'),
    import('./platform/queue.ts'),
  ]);
  const db = await openAndMigrate(config, await quietLogger());
  try {
    if (sub === 'list') {
      const jobs = await listFailedJobs(db, {
        limit: options.limit,
        ...(options.queue ? { queue: options.queue } : {}),
      });
      if (options.json) process.stdout.write(JSON.stringify(jobs, null, 2) + '\n');
      else if (jobs.length === 0) process.stdout.write('no dead-lettered jobs\n');
      else
        for (const j of jobs)
          process.stdout.write(
            `${j.id}  ${j.queue}  ${j.failedAt.toISOString()}  ${j.attempts} attempts  ${j.error}\n    ${JSON.stringify(j.data)}\n`,
          );
      return 0;
    }
    const newId = await retryJob(db, id!);
    if (!newId) {
      process.stderr.write(`no dead-lettered job ${id}\n`);
      return 1;
    }
    process.stdout.write(`sent back to its queue as job ${newId}\n`);
    return 0;
  } finally {
    await db.close();
  }
}

const drillHelp = `engine-room drill: a scripted incident against a running engine, to watch on /console

Usage: engine-room drill [options]

A burst of orders while the sandbox processor is down and a webhook receiver (run by the drill)
has gone away; charges run out of attempts and become dead letters, which you retry from the
console; then everything recovers. Takes 2 to 5 minutes. Needs the sandbox payment processor.

Options:
  --url URL              the engine (default http://127.0.0.1:3000)
  --email E              an admin's email (default ADMIN_EMAIL)
  --password P           its password (default ADMIN_PASSWORD; prefer the variable)
  --orders N             orders in the burst (default 40)
  --outage-seconds S     how long the processor is down, from the start and again from the end
                         of the burst (default 40)
  --auto-retry           retry the dead letters without waiting for you
  --wait S               how long to wait for you to retry them (default 300)
  -h, --help             this help
`;

commandHelp.drill = drillHelp;

async function runDrillCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      url: { type: 'string', default: 'http://127.0.0.1:3000' },
      email: { type: 'string' },
      password: { type: 'string' },
      orders: { type: 'string', default: '40' },
      'outage-seconds': { type: 'string', default: '40' },
      'auto-retry': { type: 'boolean', default: false },
      wait: { type: 'string', default: '300' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(drillHelp);
    return 0;
  }
  const int = (name: string, raw: string, min: number, max: number): number | null => {
    const n = Number(raw);
    if (Number.isInteger(n) && n >= min && n <= max) return n;
    process.stderr.write(`engine-room drill: --${name} must be a whole number from ${min} to ${max}\n`);
    return null;
  };
  const orders = int('orders', values.orders, 2, 1000);
  const outageSeconds = int('outage-seconds', values['outage-seconds'], 5, 3600);
  const waitSeconds = int('wait', values.wait, 0, 3600);
  if (orders === null || outageSeconds === null || waitSeconds === null) return 2;
  // The admin credentials the engine was started with are the natural default.
  const config = loadConfig();
  const email = values.email ?? config.adminEmail;
  const password = values.password ?? config.adminPassword;
  if (!email || !password) {
    process.stderr.write(
      'engine-room drill: give an admin account with --email and --password, or ADMIN_EMAIL and ADMIN_PASSWORD\n',
    );
    return 2;
  }
  const { runDrill } = await import('./drill.ts');
  return runDrill({
    url: values.url,
    email,
    password,
    orders,
    outageSeconds,
    waitSeconds,
    autoRetry: values['auto-retry'],
    out: (line) => process.stdout.write(line + '\n'),
  });
}

async function main(argv: string[]): Promise<number> {
  // The drill has options of its own: it parses them itself.
  if (argv[0] === 'drill') return runDrillCommand(argv.slice(1));
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
      json: { type: 'boolean', default: false },
      limit: { type: 'string', default: '20' },
      queue: { type: 'string' },
      demo: { type: 'boolean', default: false },
      force: { type: 'boolean', default: false },
      orders: { type: 'string' },
      customers: { type: 'string' },
    },
  });
  if (values.version) {
    process.stdout.write(version + '\n');
    return 0;
  }
  const [command, ...rest] = positionals;
  if (command === undefined || command === 'help') {
    const about = command === 'help' ? rest[0] : undefined;
    if (about !== undefined && !(about in commandHelp)) throw new UsageError(`unknown command "${about}"`);
    process.stdout.write(about ? commandHelp[about]! : help);
    return command === undefined && !values.help ? 2 : 0;
  }
  if (!(command in commandHelp)) throw new UsageError(`unknown command "${command}"`);
  if (values.help) {
    process.stdout.write(commandHelp[command]!);
    return 0;
  }
  const config = loadConfig();
  switch (command) {
    case 'start': {
      const { startServer } = await import('./server.ts');
      await runUntilSignal(() => startServer(config));
      return -1; // keeps running until a signal
    }
    case 'worker': {
      const { startWorkerProcess } = await import('./server.ts');
      await runUntilSignal(() => startWorkerProcess(config));
      return -1;
    }
    case 'seed': {
      if (values.orders !== undefined || values.customers !== undefined) {
        if (values.demo) throw new UsageError('seed takes --demo or --orders N --customers M, not both');
        const size = (name: string, raw: string | undefined, fallback: number, min: number) => {
          const n = Number(raw ?? fallback);
          if (!Number.isInteger(n) || n < min || n > 10_000_000)
            throw new UsageError(`--${name} must be a whole number from ${min} to 10000000`);
          return n;
        };
        const { seedBulk } = await import('./seed-bulk.ts');
        return seedBulk(config, {
          orders: size('orders', values.orders, 100_000, 0),
          customers: size('customers', values.customers, 10_000, 1),
        });
      }
      if (!values.demo) throw new UsageError('seed needs --demo, or --orders N --customers M');
      const { seedDemo } = await import('./seed.ts');
      return seedDemo(config, { force: values.force ?? false });
    }
    case 'audit':
      return runAudit(config, values.json ?? false);
    case 'jobs': {
      const limit = Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
        throw new UsageError('--limit must be a whole number from 1 to 1000');
      return runJobs(config, rest, { json: values.json ?? false, limit, queue: values.queue });
    }
    default: // migrate
      await runMigrate(config);
      return 0;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  async (err) => {
    if (err instanceof ConfigError) process.stderr.write(`engine-room: invalid configuration: ${err.message}\n`);
    else if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      // A usage error, like an unknown command or option: exit status 2.
      process.stderr.write(
        `engine-room: ${(err as Error).message} (engine-room --help lists the commands and options)\n`,
      );
      process.exit(2);
    } else if (err instanceof (await import('./server.ts')).StartError) {
      // One line per reason (a production start may be refused for several).
      process.stderr.write(
        err.message
          .split('\n')
          .map((line) => `engine-room: cannot start: ${line}\n`)
          .join(''),
      );
    } else process.stderr.write(`engine-room: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
