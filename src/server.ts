// Starting and stopping the engine: open the database, migrate, create the first admin, listen,
// and on SIGTERM/SIGINT stop accepting, let requests in flight finish (bounded), close the database.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import type { FastifyInstance } from 'fastify';
import type { Config } from './config.ts';
import { openDatabase, type Db } from './platform/db.ts';
import { migrate, MigrationError } from './platform/migrate.ts';
import { loggerOptions } from './platform/log.ts';
import { startTracing } from './platform/tracing.ts';
import { buildApp } from './app.ts';
import { ensureAdmin } from './modules/accounts/service.ts';
import { declareAllQueues, startWorkers } from './worker.ts';
import type { Queue } from './platform/queue.ts';

export class StartError extends Error {}

// The embedded database is one process's: a second PGlite on the same files (a second `start`, or
// `migrate` while the server runs) would corrupt them, and PGlite does not stop it by itself. A
// pid file in DATA_DIR does; a stale one (its process is gone, or it was ours, as in a container
// where the engine is always pid 1) is taken over.
async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  await mkdir(dataDir, { recursive: true });
  const lockPath = join(dataDir, 'engine-room.pid');
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(lockPath, String(process.pid), { flag: 'wx' });
      return () => rm(lockPath, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
    }
    const pid = Number((await readFile(lockPath, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) {
      throw new StartError(`${dataDir} is in use by process ${pid}: the embedded database allows one process at a time (if no such process runs, delete ${lockPath})`);
    }
    await rm(lockPath, { force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function openAndMigrate(config: Readonly<Config>, log: pino.Logger): Promise<Db> {
  const where = config.databaseUrl ? 'PostgreSQL (DATABASE_URL)' : `the embedded database in ${config.dataDir}`;
  log.info(`opening ${where}`);
  const unlock = config.databaseUrl ? async () => {} : await lockDataDir(config.dataDir).catch((err: Error) => {
    throw err instanceof StartError ? err : new StartError(`cannot use DATA_DIR ${config.dataDir}: ${err.message}`);
  });
  let opened: Db;
  try {
    opened = await openDatabase(config, (err) => log.error({ err }, 'idle database connection failed'));
  } catch (err) {
    await unlock();
    throw new StartError(`cannot open ${where}: ${(err as Error).message}`);
  }
  // Closing the database also gives up the data directory.
  const db: Db = { ...opened, close: async () => { try { await opened.close(); } finally { await unlock(); } } };
  try {
    const applied = await migrate(db);
    if (applied.length > 0) log.info({ applied }, `applied ${applied.length} migration(s)`);
  } catch (err) {
    await db.close().catch(() => {});
    if (err instanceof MigrationError) throw new StartError(`${err.message}; the database was left as it was`);
    throw new StartError(`cannot open ${where}: ${(err as Error).message}`);
  }
  return db;
}

function adminLines(admin: { email: string; generatedPassword: string | null }): string[] {
  const lines = [`  Created the admin account ${admin.email}` + (admin.generatedPassword ? ` with password ${admin.generatedPassword}` : ' with ADMIN_PASSWORD')];
  if (admin.generatedPassword) lines.push('  (shown this once: write it down, or set ADMIN_PASSWORD before the first start)');
  return lines;
}

// PGlite runs PostgreSQL with fsync off (-F) and its Node file system has no fsync: a commit
// survives the process being killed, not the machine crashing or losing power.
const embeddedInProduction = 'NODE_ENV is production but DATABASE_URL is not set: the embedded database never flushes to disk (no fsync), so an OS crash or power loss can lose orders and payments already acknowledged; use PostgreSQL (DATABASE_URL) in production';

export async function startServer(config: Readonly<Config>): Promise<{ app: FastifyInstance; db: Db; stop: () => Promise<void> }> {
  // Before the logger and the database, which trace themselves when it is on.
  const stopTracing = await startTracing(config.tracing);
  const log = pino(loggerOptions(config.logLevel));
  if (config.production && !config.databaseUrl) {
    log.warn(embeddedInProduction);
    process.stderr.write(`Warning: ${embeddedInProduction}\n`);
  }
  const db = await openAndMigrate(config, log);
  let app: FastifyInstance | undefined;
  let queue: Queue | undefined;
  let admin: Awaited<ReturnType<typeof ensureAdmin>> = null;
  let address: string;
  try {
    admin = await ensureAdmin(db, { email: config.adminEmail, password: config.adminPassword });
    await declareAllQueues(db, config);
    // Workers in this process unless WORKERS=off (then `engine-room worker` processes do the jobs).
    if (config.inlineWorkers) queue = await startWorkers(db, config, log);
    app = await buildApp(config, db, queue ? { queue } : {});
    address = await app.listen({ port: config.port, host: config.host });
  } catch (err) {
    // The admin may exist already: its generated password must still be shown, or it is lost for good.
    if (admin) process.stderr.write(adminLines(admin).join('\n') + '\n');
    await app?.close().catch(() => {});
    await queue?.stop().catch(() => {});
    await db.close().catch(() => {});
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL') {
      throw new StartError(`cannot listen on ${config.host}:${config.port} (${e.code}); set PORT or HOST`);
    }
    throw err;
  }

  // Printed for the person at the terminal, not logged: the generated password must not reach a log store.
  const lines = [
    `Engine Room is listening on ${address}`,
    `  API reference: ${address}/docs   OpenAPI: ${address}/openapi.json`,
    `  Job workers: ${queue ? 'running in this process' : 'off here (WORKERS=off): run engine-room worker'}`,
  ];
  if (admin) lines.push(...adminLines(admin));
  process.stderr.write(lines.join('\n') + '\n');

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      log.info('shutting down: no new connections, waiting for requests in flight');
      const timer = setTimeout(() => {
        log.warn(`requests still running after ${config.shutdownTimeoutSeconds}s; closing their connections`);
        app.server.closeAllConnections();
      }, config.shutdownTimeoutSeconds * 1000);
      try {
        await app.close();
        // Running jobs get the same grace; those still running after it are retried elsewhere.
        await queue?.stop();
      } finally {
        clearTimeout(timer);
        // PGlite must be closed cleanly, or its files may be left half-written.
        await db.close();
        await stopTracing?.().catch((err: Error) => log.warn({ err }, 'could not export the last spans'));
        log.info('stopped');
      }
    })();
    return stopping;
  };
  return { app, db, stop };
}

/** A process that only runs job workers (`engine-room worker`); any number of them per PostgreSQL. */
export async function startWorkerProcess(config: Readonly<Config>): Promise<{ stop: () => Promise<void> }> {
  if (!config.databaseUrl) {
    throw new StartError('a separate worker needs DATABASE_URL: the embedded database belongs to one process, whose start runs the workers itself');
  }
  const stopTracing = await startTracing(config.tracing);
  const log = pino(loggerOptions(config.logLevel));
  const db = await openAndMigrate(config, log);
  await declareAllQueues(db, config);
  const queue = await startWorkers(db, config, log);
  process.stderr.write(`Engine Room worker running (pid ${process.pid}, ${config.workerConcurrency} jobs at once per queue)\n`);
  let stopping: Promise<void> | undefined;
  return {
    stop: () => {
      stopping ??= (async () => {
        try { await queue.stop(); } finally {
          await db.close();
          await stopTracing?.().catch((err: Error) => log.warn({ err }, 'could not export the last spans'));
          log.info('worker stopped');
        }
      })();
      return stopping;
    },
  };
}
