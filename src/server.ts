// Starting and stopping the engine: open the database, migrate, create the first admin, listen,
// and on SIGTERM/SIGINT stop accepting, let requests in flight finish (bounded), close the database.
import { constants } from 'node:fs';
import { access, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import type { FastifyInstance } from 'fastify';
import { productionRefusals, productionWarnings, type Config } from './config.ts';
import { traceDb } from './platform/tracing.ts';
import { openDatabase, type Db } from './platform/db.ts';
import { migrate, MigrationError } from './platform/migrate.ts';
import { loggerOptions } from './platform/log.ts';
import { startTracing } from './platform/tracing.ts';
import { buildApp, type BuildOptions } from './app.ts';
import { ensureAdmin } from './modules/accounts/service.ts';
import { findUserByEmail } from './modules/accounts/repo.ts';
import { verifyPassword } from './modules/accounts/passwords.ts';
import { declareAllQueues, startWorkers } from './worker.ts';
import type { Queue } from './platform/queue.ts';

/** A start-up failure the person starting can fix: its message is one line saying what to change. */
export class StartError extends Error {}

/** DATA_DIR must be a directory this process can read and write; checked before PGlite opens it. */
async function checkDataDir(dataDir: string): Promise<void> {
  const where = `DATA_DIR ${resolve(dataDir)}`;
  const info = await stat(dataDir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    if (err.code === 'ENOTDIR')
      throw new StartError(`${where} is inside a file, not a directory: set DATA_DIR to a directory`);
    if (err.code === 'EACCES' || err.code === 'EPERM')
      throw new StartError(
        `${where} cannot be reached by this user (permission denied): set DATA_DIR to a directory it may read and write`,
      );
    throw err;
  });
  if (info && !info.isDirectory())
    throw new StartError(`${where} is a file, not a directory: set DATA_DIR to a directory (or move the file away)`);
  try {
    if (info) await access(dataDir, constants.R_OK | constants.W_OK | constants.X_OK);
    else await mkdir(dataDir, { recursive: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
      throw new StartError(
        `${where} is not ${info ? 'readable and writable' : 'creatable'} by this user (${code}): set DATA_DIR to a directory it may read and write, or fix its permissions`,
      );
    }
    if (code === 'ENOTDIR' || code === 'EEXIST')
      throw new StartError(`${where} is inside a file, not a directory: set DATA_DIR to a directory`);
    throw err;
  }
}

/** The one line that says why PostgreSQL refused, and what to change. */
export function postgresProblem(err: unknown, url: string): string {
  const u = new URL(url);
  const server = `PostgreSQL at ${u.hostname}:${u.port || 5432}`;
  const e = err as { code?: string; message?: string };
  switch (e.code) {
    case 'ECONNREFUSED':
      return `${server} refused the connection: start PostgreSQL, or fix the host and port in DATABASE_URL`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `the host of DATABASE_URL, ${u.hostname}, is not known: fix the host in DATABASE_URL`;
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `${server} cannot be reached (${e.code}): check the host in DATABASE_URL and the network`;
    case '28P01':
    case '28000':
      return `${server} refused user "${decodeURIComponent(u.username) || 'none given'}" (${e.message}): fix the user or password in DATABASE_URL`;
    case '3D000':
      return `${server} has no database "${decodeURIComponent(u.pathname.slice(1))}": create it (createdb), or fix the database name in DATABASE_URL`;
    default:
      return `cannot use ${server}: ${e.message ?? String(err)}`;
  }
}

/** The port must be free before the slow work starts (opening and migrating the database). */
async function checkPortFree(host: string, port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolvePromise, reject) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => reject(new StartError(listenProblem(host, port, err.code))));
    probe.listen({ port, host, exclusive: true }, () => probe.close(() => resolvePromise()));
  });
}

function listenProblem(host: string, port: number, code: string | undefined): string {
  if (code === 'EADDRINUSE')
    return `port ${port} on ${host} is in use by another process: set PORT to a free one (PORT=0 picks one)`;
  if (code === 'EACCES') return `this user may not listen on port ${port}: set PORT to 1024 or above`;
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND')
    return `${host} is not an address of this machine: set HOST (127.0.0.1, or 0.0.0.0 for every interface)`;
  return `cannot listen on ${host}:${port} (${code}): set PORT or HOST`;
}

// The embedded database is one process's: a second PGlite on the same files (a second `start`, or
// `migrate` while the server runs) would corrupt them, and PGlite does not stop it by itself. A
// pid file in DATA_DIR does; a stale one (its process is gone, or it was ours, as in a container
// where the engine is always pid 1) is taken over.
async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  await checkDataDir(dataDir);
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
      throw new StartError(
        `${dataDir} is in use by process ${pid}: the embedded database allows one process at a time (if no such process runs, delete ${lockPath})`,
      );
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
  const unlock = config.databaseUrl
    ? async () => {}
    : await lockDataDir(config.dataDir).catch((err: Error) => {
        throw err instanceof StartError ? err : new StartError(`cannot use DATA_DIR ${config.dataDir}: ${err.message}`);
      });
  let opened: Db;
  try {
    // With tracing on (platform/tracing.ts), its statements and transactions make spans.
    opened = traceDb(await openDatabase(config, (err) => log.error({ err }, 'idle database connection failed')));
  } catch (err) {
    await unlock();
    throw new StartError(`cannot open ${where}: ${(err as Error).message}`);
  }
  if (config.databaseUrl) {
    // A refused connection or login is said in one line before anything else is tried.
    try {
      await opened.query('SELECT 1');
    } catch (err) {
      await opened.close().catch(() => {}); // the refusal below is what the operator needs to read
      throw new StartError(postgresProblem(err, config.databaseUrl));
    }
  }
  // Closing the database also gives up the data directory.
  const db: Db = {
    ...opened,
    close: async () => {
      try {
        await opened.close();
      } finally {
        await unlock();
      }
    },
  };
  try {
    const applied = await migrate(db);
    if (applied.length > 0) log.info({ applied }, `applied ${applied.length} migration(s)`);
  } catch (err) {
    await db.close().catch(() => {}); // the migration's error is the one to report
    if (err instanceof MigrationError) throw new StartError(`${err.message}; the database was left as it was`);
    throw new StartError(`cannot open ${where}: ${(err as Error).message}`);
  }
  return db;
}

/**
 * ADMIN_EMAIL and ADMIN_PASSWORD only create the first admin, on an empty database. Set on one that
 * has users, they would be ignored without a word, and the person would wonder why the password
 * they set does not work: say so, unless they match the account that exists.
 */
async function ignoredAdminSettings(db: Db, config: Readonly<Config>): Promise<string | undefined> {
  if (config.adminEmail === undefined && config.adminPassword === undefined) return undefined;
  const email = config.adminEmail ?? 'admin@engine-room.local';
  const user = await findUserByEmail(db, email);
  const unset = [
    config.adminEmail !== undefined ? 'ADMIN_EMAIL' : '',
    config.adminPassword !== undefined ? 'ADMIN_PASSWORD' : '',
  ]
    .filter(Boolean)
    .join(' and ');
  const why = !user
    ? `there is no account ${email}`
    : user.role !== 'admin'
      ? `${email} is a ${user.role}, not an admin`
      : config.adminPassword !== undefined && !(await verifyPassword(user.password_hash, config.adminPassword))
        ? `${email} has another password`
        : undefined;
  if (!why) return undefined;
  return `warning: ${unset} ignored: ADMIN_EMAIL and ADMIN_PASSWORD only create the first admin on an empty database, and this one has users (${why}); sign in with an existing admin (PATCH /v1/users/{id} makes another one), or unset ${unset}`;
}

export function adminLines(admin: { email: string; generatedPassword: string | null }): string[] {
  const lines = [
    `  Created the admin account ${admin.email}` +
      (admin.generatedPassword ? ` with password ${admin.generatedPassword}` : ' with ADMIN_PASSWORD'),
  ];
  if (admin.generatedPassword)
    lines.push('  (shown this once: write it down, or set ADMIN_PASSWORD before the first start)');
  return lines;
}

// PGlite runs PostgreSQL with fsync off (-F) and its Node file system has no fsync: a commit
// survives the process being killed, not the machine crashing or losing power.
const embeddedInProduction =
  'NODE_ENV is production but DATABASE_URL is not set: the embedded database never flushes to disk (no fsync), so an OS crash or power loss can lose orders and payments already acknowledged; use PostgreSQL (DATABASE_URL) in production';

/** Settings refused under NODE_ENV=production (config.ts), one line each, before anything is opened. */
function refuseUnsafeProduction(config: Readonly<Config>): void {
  const refusals = productionRefusals(config);
  if (refusals.length > 0) throw new StartError(refusals.join('\n'));
}

const mailNowhere =
  'SMTP_URL is not set and the dev mailbox is off (DEV_MAILBOX): mail is recorded but never delivered, password reset and verification mails included; set SMTP_URL';

/**
 * Where mail goes, for the start's lines: a line when it stays in the dev mailbox, a warning (also
 * logged) when it goes nowhere. Never SMTP_URL itself, which may hold a password.
 */
function mailNotice(config: Readonly<Config>, log: pino.Logger): string | undefined {
  if (config.smtpUrl) return undefined;
  if (config.devMailbox)
    return '  Mail: not sent but kept in the dev mailbox, GET /v1/dev/mailbox (admins; account tokens are never shown there); set SMTP_URL to send it';
  log.warn(mailNowhere);
  return `Warning: ${mailNowhere}`;
}

export async function startServer(
  config: Readonly<Config>,
): Promise<{ app: FastifyInstance; db: Db; stop: () => Promise<void> }> {
  refuseUnsafeProduction(config);
  // Before the logger and the database, which trace themselves when it is on.
  const stopTracing = await startTracing(config.tracing);
  const log = pino(loggerOptions(config.logLevel));
  await checkPortFree(config.host, config.port);
  if (config.production && !config.databaseUrl) {
    log.warn(embeddedInProduction);
    process.stderr.write(`Warning: ${embeddedInProduction}\n`);
  }
  for (const warning of productionWarnings(config)) {
    log.warn(warning);
    process.stderr.write(`Warning: ${warning}\n`);
  }
  const db = await openAndMigrate(config, log);
  let app: FastifyInstance | undefined;
  let queue: Queue | undefined;
  let admin: Awaited<ReturnType<typeof ensureAdmin>> = null;
  let ignored: string | undefined;
  let address: string;
  try {
    admin = await ensureAdmin(db, { email: config.adminEmail, password: config.adminPassword });
    if (!admin) ignored = await ignoredAdminSettings(db, config);
    await declareAllQueues(db, config);
    // Serve first, then start the workers (pg-boss's supervisor and timekeeper take a few hundred
    // ms): jobs enqueued meanwhile wait in the queue. The app reads options.queue when it has a job
    // to wake a worker for, so setting it afterwards is enough.
    const options: BuildOptions = {};
    app = await buildApp(config, db, options);
    // A listen queue of 4,096 connections (Node's default is 511; Linux caps it at somaxconn): when
    // a thousand buyers connect at once, the ones past 511 would have their SYN dropped and retried
    // 1, 3, 7 s later, a wait no load shedding here can see or bound (issue 31:
    // reports/2026-12-08-issue-31-load-shedding.md).
    address = await app.listen({ port: config.port, host: config.host, backlog: 4096 });
    // Workers in this process unless WORKERS=off (then `engine-room worker` processes do the jobs).
    if (config.inlineWorkers) options.queue = queue = await startWorkers(db, config, log);
  } catch (err) {
    // The admin may exist already: its generated password must still be shown, or it is lost for good.
    if (admin) process.stderr.write(adminLines(admin).join('\n') + '\n');
    // The start failed: its error is what to report, not a failure to close what it half opened.
    await app?.close().catch(() => {});
    await queue?.stop().catch(() => {});
    await db.close().catch(() => {});
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL')
      throw new StartError(listenProblem(config.host, config.port, e.code));
    throw err;
  }

  // Printed for the person at the terminal, not logged: the generated password must not reach a log store.
  const lines = [
    `Engine Room is listening on ${address}`,
    `  API reference: ${address}/docs   OpenAPI: ${address}/openapi.json`,
    `  Job workers: ${queue ? 'running in this process' : 'off here (WORKERS=off): run engine-room worker'}`,
  ];
  const mail = mailNotice(config, log);
  if (mail) lines.push(mail);
  if (admin) lines.push(...adminLines(admin));
  if (ignored) lines.push(ignored);
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
  refuseUnsafeProduction(config);
  if (!config.databaseUrl) {
    throw new StartError(
      'a separate worker needs DATABASE_URL: the embedded database belongs to one process, whose start runs the workers itself',
    );
  }
  const stopTracing = await startTracing(config.tracing);
  const log = pino(loggerOptions(config.logLevel));
  const db = await openAndMigrate(config, log);
  await declareAllQueues(db, config);
  const queue = await startWorkers(db, config, log);
  const mail = mailNotice(config, log);
  process.stderr.write(
    `Engine Room worker running (pid ${process.pid}, ${config.workerConcurrency} jobs at once per queue)\n${mail ? mail.trim() + '\n' : ''}`,
  );
  let stopping: Promise<void> | undefined;
  return {
    stop: () => {
      stopping ??= (async () => {
        try {
          await queue.stop();
        } finally {
          await db.close();
          await stopTracing?.().catch((err: Error) => log.warn({ err }, 'could not export the last spans'));
          log.info('worker stopped');
        }
      })();
      return stopping;
    },
  };
}
