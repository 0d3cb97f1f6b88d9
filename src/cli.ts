#!/usr/bin/env node
// The engine-room command. Each command is a small function; configuration comes from the
// environment (see the README) and is validated before anything starts.
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { ConfigError, loadConfig, type Config } from './config.js';
import { StartError, openAndMigrate, startServer } from './server.js';
import { loggerOptions } from './platform/log.js';
import { version } from './app.js';

const help = `engine-room ${version}: an order and payment backend on PostgreSQL

Usage: engine-room <command> [options]

Commands:
  start      Run the HTTP API (migrating the database first)
  migrate    Apply pending database migrations and exit
  help       Show this help

Options:
  -h, --help     Show this help
  -v, --version  Print the version

Configuration is read from the environment: PORT (3000), HOST (127.0.0.1),
DATABASE_URL (unset: embedded PostgreSQL in DATA_DIR, default ./.engine-room),
ADMIN_EMAIL, ADMIN_PASSWORD, LOG_LEVEL (info), CORS_ORIGINS, and more; see README.md.
`;

async function runStart(config: Readonly<Config>): Promise<void> {
  const { stop } = await startServer(config);
  const onSignal = (signal: string) => {
    process.stderr.write(`\n${signal} received, stopping\n`);
    stop().then(() => process.exit(0), (err) => {
      process.stderr.write(`stop failed: ${(err as Error).message}\n`);
      process.exit(1);
    });
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
}

async function runMigrate(config: Readonly<Config>): Promise<void> {
  const log = pino(loggerOptions(config.logLevel));
  const db = await openAndMigrate(config, log);
  await db.close();
  process.stderr.write('migrations are current\n');
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'v' } },
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
      await runStart(config);
      return -1; // keeps running until a signal
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
    else if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) process.stderr.write(`engine-room: ${(err as Error).message}\n\n${help}`);
    else process.stderr.write(`engine-room: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
