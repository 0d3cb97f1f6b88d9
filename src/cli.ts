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

async function main(argv: string[]): Promise<number> {
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
