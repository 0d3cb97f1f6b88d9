// Starting and stopping the engine: open the database, migrate, create the first admin, listen,
// and on SIGTERM/SIGINT stop accepting, let requests in flight finish (bounded), close the database.
import { pino } from 'pino';
import type { FastifyInstance } from 'fastify';
import type { Config } from './config.js';
import { openDatabase, type Db } from './platform/db.js';
import { migrate, MigrationError } from './platform/migrate.js';
import { loggerOptions } from './platform/log.js';
import { buildApp } from './app.js';
import { ensureAdmin } from './modules/accounts/service.js';

export class StartError extends Error {}

export async function openAndMigrate(config: Readonly<Config>, log: pino.Logger): Promise<Db> {
  const where = config.databaseUrl ? 'PostgreSQL (DATABASE_URL)' : `the embedded database in ${config.dataDir}`;
  log.info(`opening ${where}`);
  const db = await openDatabase(config, (err) => log.error({ err }, 'idle database connection failed'));
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

export async function startServer(config: Readonly<Config>): Promise<{ app: FastifyInstance; db: Db; stop: () => Promise<void> }> {
  const log = pino(loggerOptions(config.logLevel));
  const db = await openAndMigrate(config, log);
  const admin = await ensureAdmin(db, { email: config.adminEmail, password: config.adminPassword });
  const app = await buildApp(config, db);
  const address = await app.listen({ port: config.port, host: config.host });

  // Printed for the person at the terminal, not logged: the generated password must not reach a log store.
  const lines = [`Engine Room is listening on ${address}`, `  API reference: ${address}/docs   OpenAPI: ${address}/openapi.json`];
  if (admin) {
    lines.push(`  Created the admin account ${admin.email}` + (admin.generatedPassword ? ` with password ${admin.generatedPassword}` : ' with ADMIN_PASSWORD'));
    if (admin.generatedPassword) lines.push('  (shown this once: write it down, or set ADMIN_PASSWORD before the first start)');
  }
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
      } finally {
        clearTimeout(timer);
        // PGlite must be closed cleanly, or its files may be left half-written.
        await db.close();
        log.info('stopped');
      }
    })();
    return stopping;
  };
  return { app, db, stop };
}
