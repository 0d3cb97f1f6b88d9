// buildApp(config, db) answers a ready Fastify instance: platform plugins first, then each domain
// module, registered explicitly. It does not listen; src/server.ts does, and tests call inject.
import Fastify, { type FastifyInstance } from 'fastify';
import cookie from '@fastify/cookie';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from './config.ts';
import type { Db } from './platform/db.ts';
import { frameworkError, maxPathSegmentLength, registerHttpPlatform, requestIdFor } from './platform/http.ts';
import { registerAuth } from './platform/auth.ts';
import { createCounters, limitCounters, registerMetrics } from './platform/metrics.ts';
import { registerLoadShedding } from './platform/load-shedding.ts';
import { createApiRateLimits } from './platform/api-rate-limit.ts';
import { registerOpenApi } from './platform/openapi.ts';
import { operationsRoutes } from './platform/operations.ts';
import { loggerOptions } from './platform/log.ts';
import { registerHttpTracing } from './platform/tracing.ts';
import { loadMigrations } from './platform/migrate.ts';
import { packageRoot } from './platform/paths.ts';
import { accountsRoutes } from './modules/accounts/routes.ts';
import { buyerCheck, tokenResolver } from './modules/accounts/service.ts';
import { findUserByEmail } from './modules/accounts/repo.ts';
import { catalogRoutes } from './modules/catalog/routes.ts';
import { ordersRoutes } from './modules/orders/routes.ts';
import { customerOfOrder } from './modules/orders/service.ts';
import type { Queue } from './platform/queue.ts';
import { chargeQueue } from './modules/payments/outbox.ts';
import { webhooksRoutes } from './modules/webhooks/routes.ts';
import { sandboxRoutes } from './modules/payments/sandbox-routes.ts';
import { ledgerRoutes } from './modules/ledger/routes.ts';
import { operationsAdminRoutes } from './modules/operations/routes.ts';
import { messagingRoutes } from './modules/messaging/routes.ts';
import { sandboxOutageRoutes } from './modules/payments/outage-routes.ts';
import { drillRetryBudget } from './modules/payments/providers/sandbox.ts';
import { startTelemetry } from './modules/operations/telemetry.ts';
import { consoleRoutes } from './modules/console/routes.ts';

export const version: string = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')).version;

export interface BuildOptions {
  /** Where log lines go (standard output by default); tests read them from here. */
  logStream?: { write(line: string): void };
  /** The workers running in this process, if any: woken right after a commit that gave them work (read at that moment, so it may be set after the build). */
  queue?: Queue;
}

/**
 * Node's HTTP server, as Fastify sets it up, waits for a request body forever (requestTimeout 0):
 * a client trickling a byte now and then holds a connection, and a body parser, for as long as it
 * likes. requestTimeout bounds receiving the whole request (headers included), and only that: a
 * response that streams for hours (GET /v1/events) is not cut. No socket idle timeout
 * (connectionTimeout): the event stream is quiet between heartbeats. Node checks the deadlines
 * every connectionsCheckingInterval, so a request is cut off within about 1.5 times the timeout.
 */
function serverTimeouts(config: Readonly<Config>) {
  const requestTimeout = config.requestTimeoutSeconds * 1000;
  return {
    requestTimeout,
    keepAliveTimeout: config.keepAliveTimeoutSeconds * 1000,
    http: {
      requestTimeout,
      headersTimeout: requestTimeout,
      connectionsCheckingInterval: Math.min(5000, requestTimeout / 2),
    },
  };
}

export async function buildApp(config: Readonly<Config>, db: Db, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: { ...loggerOptions(config.logLevel), ...(options.logStream ? { stream: options.logStream } : {}) },
    genReqId: requestIdFor,
    trustProxy: config.trustProxy,
    bodyLimit: 1024 * 1024,
    ...serverTimeouts(config),
    // Answer the same for /v1/me and /v1/me/ rather than a confusing 404.
    // A longer path segment is refused by the router with 414 uri_too_long (declared in the OpenAPI
    // document of every operation with a path parameter), as problem+json like every error.
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: maxPathSegmentLength },
    frameworkErrors: frameworkError,
  });

  // First, so that every other hook runs inside the request's span (nothing when tracing is off).
  registerHttpTracing(app);
  await registerHttpPlatform(app, { corsOrigins: config.corsOrigins });
  await app.register(cookie);
  // Counted in memory, written for the console every few seconds (modules/operations/telemetry.ts).
  const counters = createCounters();
  const metrics = registerMetrics(app, { counters, db });
  const overloadCounters = limitCounters(metrics);
  // onRequest hooks run in this order: wait for a turn (or be shed) before any work, then
  // authenticate (what it refuses is counted against the client address), then count the request
  // against its caller's rate limit (keyed by who authentication found). A request with a body
  // takes its turn once the body is in (preValidation).
  const rateLimits = createApiRateLimits(app, {
    db,
    settings: config.rateLimits,
    refused: overloadCounters.rateLimited,
  });
  registerLoadShedding(app, {
    settings: {
      targetWaitMs: config.shedTargetWaitMs,
      eventLoopDelayMs: config.shedEventLoopDelayMs,
      maxInFlight: config.shedMaxInFlight,
      slowUploadsPerClient: config.shedSlowUploadsPerClient,
    },
    shed: overloadCounters.shed,
    rateLimited: overloadCounters.rateLimited,
    counters,
  });
  registerAuth(app, tokenResolver(db), rateLimits?.credentialGuard);
  if (rateLimits) app.addHook('onRequest', rateLimits.countCaller);
  await registerOpenApi(app, version);

  operationsRoutes(app, {
    db,
    migrations: await loadMigrations(),
    metrics,
    metricsAccess: { enabled: config.metrics, token: config.metricsToken },
  });
  accountsRoutes(app, { db, config });
  catalogRoutes(app, { db });
  // An in-process worker starts on a new charge at once instead of at its next poll.
  // Orders filter by a customer's email with a function of accounts, not an import (as messaging below).
  ordersRoutes(app, {
    db,
    batchConcurrency: config.orderBatchConcurrency,
    onCharge: () => options.queue?.wake(chargeQueue),
    checkBuyer: buyerCheck(config),
    customerIdOfEmail: async (email) => (await findUserByEmail(db, email))?.id,
    // The drill card's short retry budget is a rule of the sandbox only.
    chargeRetryBudget: config.paymentProvider === 'sandbox' ? drillRetryBudget : undefined,
  });
  webhooksRoutes(app, { db, policy: { allowPrivateUrls: config.webhookAllowPrivateUrls } });
  sandboxRoutes(app, { db });
  ledgerRoutes(app, { db, paymentProvider: config.paymentProvider });
  operationsAdminRoutes(app, {
    db,
    eventStreamHeartbeatSeconds: config.eventStreamHeartbeatSeconds,
    paymentProvider: config.paymentProvider,
    metrics: { enabled: config.metrics, token: config.metricsToken },
  });
  // The drill's outage control exists only where the sandbox is the processor.
  if (config.paymentProvider === 'sandbox') sandboxOutageRoutes(app, { db });
  // Messaging checks an order a customer cites with a function of orders, not an import (see docs/ARCHITECTURE.md).
  messagingRoutes(app, { db, config, customerOfOrder });
  await consoleRoutes(app);

  const telemetry = startTelemetry({
    db,
    version,
    role: 'api',
    counters,
    onError: (err) => app.log.warn({ err }, 'could not write the operations figures'),
  });
  app.addHook('onClose', () => telemetry.stop());

  await app.ready();
  return app;
}
