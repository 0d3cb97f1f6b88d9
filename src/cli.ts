#!/usr/bin/env node
// The engine-room command. Each command is a small function; configuration comes from the
// environment (see the README) and is validated before anything starts.
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { StartError, openAndMigrate, startServer, startWorkerProcess } from './server.ts';
import { runAudit as audit } from './modules/ledger/audit.ts';
import { listFailedJobs, retryJob } from './platform/queue.ts';
import { loggerOptions } from './platform/log.ts';
import { version } from './app.ts';
import { runDrill } from './drill.ts';

const help = `engine-room ${version}: an order and payment backend on PostgreSQL

Usage: engine-room <command> [options]

Commands:
  start                 Run the HTTP API, and the job workers unless WORKERS=off
  worker                Run only job workers (needs DATABASE_URL; run as many as you like)
  migrate               Apply pending database migrations and exit
  audit [--json]        Check that the books add up; exits 1 when a check fails
  jobs list [--queue Q] [--limit N]
                        Show dead-lettered jobs (those that failed every retry)
  jobs retry <id>       Send a dead-lettered job back to its queue
  drill [--url U]       Stage a short incident against a running engine (sandbox processor), to
                        watch on the console; see engine-room drill --help
  help                  Show this help

Options:
  -h, --help     Show this help
  -v, --version  Print the version
  --json         Machine-readable output (audit, jobs list)

Configuration is read from the environment: PORT (3000), HOST (127.0.0.1),
DATABASE_URL (unset: embedded PostgreSQL in DATA_DIR, default ./.engine-room),
ADMIN_EMAIL, ADMIN_PASSWORD, LOG_LEVEL (info), CORS_ORIGINS, and more; see README.md.
`;

async function runUntilSignal(start: () => Promise<{ stop: () => Promise<void> }>): Promise<void> {
  // Listen for signals before starting: a Ctrl-C during the first start (initdb, migrations) then
  // waits for the database to be consistent and closes it, rather than killing PGlite mid-write.
  // A second signal falls through to the default action, for when someone really wants out.
  const state: { stop?: () => Promise<void>; signalled: boolean } = { signalled: false };
  const finish = (stop: () => Promise<void>) => stop().then(() => process.exit(0), (err) => {
    process.stderr.write(`stop failed: ${(err as Error).message}\n`);
    process.exit(1);
  });
  const onSignal = (signal: string) => {
    state.signalled = true;
    process.stderr.write(`\n${signal} received, stopping\n`);
    if (state.stop) finish(state.stop);
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  state.stop = (await start()).stop;
  if (state.signalled) finish(state.stop);
}

async function runMigrate(config: Readonly<Config>): Promise<void> {
  const log = pino(loggerOptions(config.logLevel));
  const db = await openAndMigrate(config, log);
  await db.close();
  process.stderr.write('migrations are current\n');
}

async function runAudit(config: Readonly<Config>, json: boolean): Promise<number> {
  const db = await openAndMigrate(config, pino(loggerOptions('warn')));
  try {
    const result = await audit(db, { paymentProvider: config.paymentProvider });
    if (json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    else {
      for (const check of result.checks) {
        const outcome = check.skipped ? check.skipped : check.ok ? '' : `${check.violations.length} shown`;
        process.stdout.write(`${check.skipped ? 'skip' : check.ok ? 'ok  ' : 'FAIL'}  ${check.name}${outcome ? ` (${outcome})` : ''}\n`);
        for (const v of check.violations) process.stdout.write(`        ${JSON.stringify(v)}\n`);
      }
      process.stdout.write(result.ok ? 'audit passed\n' : 'audit FAILED\n');
    }
    return result.ok ? 0 : 1;
  } finally {
    await db.close();
  }
}

async function runJobs(config: Readonly<Config>, args: string[], options: { json: boolean; limit: number; queue: string | undefined }): Promise<number> {
  const [sub, id] = args;
  if (sub !== 'list' && sub !== 'retry') {
    process.stderr.write('usage: engine-room jobs list [--queue Q] [--limit N] | engine-room jobs retry <id>\n');
    return 2;
  }
  const db = await openAndMigrate(config, pino(loggerOptions('warn')));
  try {
    if (sub === 'list') {
      const jobs = await listFailedJobs(db, { limit: options.limit, ...(options.queue ? { queue: options.queue } : {}) });
      if (options.json) process.stdout.write(JSON.stringify(jobs, null, 2) + '\n');
      else if (jobs.length === 0) process.stdout.write('no dead-lettered jobs\n');
      else for (const j of jobs) process.stdout.write(`${j.id}  ${j.queue}  ${j.failedAt.toISOString()}  ${j.attempts} attempts  ${j.error}\n    ${JSON.stringify(j.data)}\n`);
      return 0;
    }
    if (!id) {
      process.stderr.write('usage: engine-room jobs retry <id>\n');
      return 2;
    }
    const newId = await retryJob(db, id);
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
    process.stderr.write('engine-room drill: give an admin account with --email and --password, or ADMIN_EMAIL and ADMIN_PASSWORD\n');
    return 2;
  }
  return runDrill({ url: values.url, email, password, orders, outageSeconds, waitSeconds, autoRetry: values['auto-retry'], out: (line) => process.stdout.write(line + '\n') });
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
    },
  });
  if (values.version) {
    process.stdout.write(version + '\n');
    return 0;
  }
  const command = positionals[0] ?? (values.help ? 'help' : undefined);
  if (command === undefined || command === 'help' || values.help) {
    process.stdout.write(help);
    return command === undefined && !values.help ? 2 : 0;
  }
  const config = loadConfig();
  switch (command) {
    case 'start':
      await runUntilSignal(() => startServer(config));
      return -1; // keeps running until a signal
    case 'worker':
      await runUntilSignal(() => startWorkerProcess(config));
      return -1;
    case 'audit':
      return runAudit(config, values.json ?? false);
    case 'jobs': {
      const limit = Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
        process.stderr.write('--limit must be a whole number from 1 to 1000\n');
        return 2;
      }
      return runJobs(config, positionals.slice(1), { json: values.json ?? false, limit, queue: values.queue });
    }
    case 'migrate':
      await runMigrate(config);
      return 0;
    default:
      process.stderr.write(`engine-room: unknown command "${command}"\n\n${help}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => { if (code >= 0) process.exitCode = code; },
  (err) => {
    if (err instanceof ConfigError) process.stderr.write(`engine-room: invalid configuration: ${err.message}\n`);
    else if (err instanceof StartError) process.stderr.write(`engine-room: cannot start: ${err.message}\n`);
    else if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      // A usage error, like an unknown command: exit status 2.
      process.stderr.write(`engine-room: ${(err as Error).message}\n\n${help}`);
      process.exit(2);
    } else process.stderr.write(`engine-room: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
