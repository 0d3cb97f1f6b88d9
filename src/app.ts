// buildApp(config, db) answers a ready Fastify instance: platform plugins first, then each domain
// module, registered explicitly. It does not listen; src/server.ts does, and tests call inject.
import Fastify, { type FastifyInstance } from 'fastify';
import cookie from '@fastify/cookie';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from './config.js';
import type { Db } from './platform/db.js';
import { registerHttpPlatform, requestIdFor } from './platform/http.js';
import { registerAuth } from './platform/auth.js';
import { registerMetrics } from './platform/metrics.js';
import { registerOpenApi } from './platform/openapi.js';
import { operationsRoutes } from './platform/operations.js';
import { loggerOptions } from './platform/log.js';
import { loadMigrations } from './platform/migrate.js';
import { packageRoot } from './platform/paths.js';
import { accountsRoutes } from './modules/accounts/routes.js';
import { tokenResolver } from './modules/accounts/service.js';
import { catalogRoutes } from './modules/catalog/routes.js';
import { ordersRoutes } from './modules/orders/routes.js';
import type { Queue } from './platform/queue.js';
import { chargeQueue } from './modules/payments/outbox.js';
import { webhooksRoutes } from './modules/webhooks/routes.js';
import { paymentsRoutes } from './modules/payments/routes.js';
import { sandboxRoutes } from './modules/payments/sandbox-routes.js';
import { ledgerRoutes } from './modules/ledger/routes.js';
import { operationsAdminRoutes } from './modules/operations/routes.js';
import { messagingRoutes } from './modules/messaging/routes.js';

export const version: string = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')).version;

export interface BuildOptions {
  /** Where log lines go (standard output by default); tests read them from here. */
  logStream?: { write(line: string): void };
  /** The workers running in this process, if any: woken right after a commit that gave them work. */
  queue?: Queue;
}

export async function buildApp(config: Readonly<Config>, db: Db, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: { ...loggerOptions(config.logLevel), ...(options.logStream ? { stream: options.logStream } : {}) },
    genReqId: requestIdFor,
    trustProxy: config.trustProxy,
    bodyLimit: 1024 * 1024,
    // Answer the same for /v1/me and /v1/me/ rather than a confusing 404.
    routerOptions: { ignoreTrailingSlash: true },
  });

  await registerHttpPlatform(app, { corsOrigins: config.corsOrigins });
  await app.register(cookie);
  registerAuth(app, tokenResolver(db));
  const metrics = registerMetrics(app);
  await registerOpenApi(app, version);

  operationsRoutes(app, { db, migrations: await loadMigrations(), metrics });
  accountsRoutes(app, { db, config });
  catalogRoutes(app, { db });
  // An in-process worker starts on a new charge at once instead of at its next poll.
  ordersRoutes(app, { db, batchConcurrency: config.orderBatchConcurrency, onCharge: () => options.queue?.wake(chargeQueue) });
  webhooksRoutes(app, { db });
  paymentsRoutes(app, { db });
  sandboxRoutes(app, { db });
  ledgerRoutes(app, { db });
  operationsAdminRoutes(app, { db });
  messagingRoutes(app, { db, config });

  await app.ready();
  return app;
}
