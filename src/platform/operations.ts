// Health, readiness, metrics and the OpenAPI document: what an operator and a load balancer need.
//
// Liveness and readiness answer different questions, because their failures have different cures.
// Readiness (/readyz): can this process serve now? It fails while the database does not answer,
// or lacks a migration, and the load balancer sends traffic elsewhere meanwhile. Liveness
// (/healthz): would a restart help? Only when the database is the embedded one, which lives inside
// this process: when its queries fail (a PGlite that ran out of file descriptors stayed broken until
// the process restarted), a restart is the cure. PostgreSQL is another system: restarting every
// API process because it is down cures nothing and turns its outage into a restart loop, so
// liveness does not touch it.
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { Db } from './db.ts';
import { migrationsCurrent, type Migration } from './migrate.ts';
import { problem } from '../errors.ts';
import { sendProblem } from './http.ts';
import { Type } from 'typebox';
import { ProblemSchema } from './schemas.ts';
import { metricsAccess, metricsRouteConfig } from './metrics-access.ts';

// How long each probe waits for the database. Liveness answers within the usual 1 s probe timeout
// even when the answer is slow to come (a busy database is not a broken one); readiness waits longer
// but not for ever (a pool that cannot connect would hold the request for its 10 s timeout).
const livenessWaitMs = 500;
const readinessWaitMs = 2000;

type Probe = { outcome: 'current' | 'pending' | 'slow' } | { outcome: 'failed'; err: unknown };

/** Asks the database for its migrations, waiting at most waitMs for the answer. */
async function probe(db: Db, migrations: Migration[], waitMs: number): Promise<Probe> {
  let timer: NodeJS.Timeout | undefined;
  const slow = new Promise<Probe>((resolve) => {
    timer = setTimeout(() => resolve({ outcome: 'slow' }), waitMs);
  });
  const answer = migrationsCurrent(db, migrations).then(
    (current): Probe => ({ outcome: current ? 'current' : 'pending' }),
    (err: unknown): Probe => ({ outcome: 'failed', err }),
  );
  try {
    return await Promise.race([answer, slow]);
  } finally {
    clearTimeout(timer);
  }
}

export function operationsRoutes(
  app: FastifyInstance,
  deps: {
    db: Db;
    migrations: Migration[];
    metrics: Registry;
    metricsAccess: { enabled: boolean; token: string | undefined };
  },
): void {
  // Never rate limited: a probe must tell busy from broken, and an overload must be observable.
  // Health and readiness are never shed either; the metrics queue as low priority (load-shedding.ts).
  const config = { access: 'public' as const, rateLimit: false as const };
  const tags = ['operations'];

  const notReady = { description: 'Unavailable', content: { 'application/problem+json': { schema: ProblemSchema } } };
  app.get(
    '/healthz',
    {
      config,
      schema: {
        operationId: 'healthz',
        tags,
        summary: 'The process is alive: 503 when a restart is the cure (its embedded database fails)',
        description: 'For a liveness probe: answers without waiting on a busy database.',
        response: { 200: Type.Object({ status: Type.Literal('ok') }), 503: notReady },
      },
    },
    async (request, reply) => {
      if (deps.db.engine === 'pglite') {
        // A slow answer is a busy database (one connection, a long transaction), not a broken one.
        const p = await probe(deps.db, deps.migrations, livenessWaitMs);
        if (p.outcome === 'failed') {
          request.log.error({ err: p.err }, 'liveness check failed: the embedded database fails its queries');
          return sendProblem(
            reply,
            problem('unavailable', 'The embedded database fails its queries; restart the process'),
          );
        }
      }
      return { status: 'ok' as const };
    },
  );

  app.get(
    '/readyz',
    {
      config,
      schema: {
        operationId: 'readyz',
        tags,
        summary: 'The database answers and its migrations are current',
        description: `For a readiness probe: 503 unavailable while the database does not answer (within ${readinessWaitMs} ms) or migrations are pending.`,
        response: { 200: Type.Object({ status: Type.Literal('ready') }), 503: notReady },
      },
    },
    async (request, reply) => {
      const p = await probe(deps.db, deps.migrations, readinessWaitMs);
      if (p.outcome === 'pending')
        return sendProblem(reply, problem('unavailable', 'Migrations are pending; run engine-room migrate'));
      if (p.outcome === 'slow')
        return sendProblem(reply, problem('unavailable', `The database did not answer within ${readinessWaitMs} ms`));
      if (p.outcome === 'failed') {
        request.log.warn({ err: p.err }, 'readiness check failed');
        return sendProblem(reply, problem('unavailable', 'The database does not answer'));
      }
      return { status: 'ready' as const };
    },
  );

  // This process's requests by route and status (401s and 429s included), memory and pool: for
  // Prometheus, with the metrics token (src/platform/metrics-access.ts). METRICS=off: no route.
  if (deps.metricsAccess.enabled) {
    app.get(
      '/metrics',
      {
        config: metricsRouteConfig,
        onRequest: metricsAccess(deps.metricsAccess.token),
        schema: { tags, summary: 'Prometheus metrics', hide: true },
      },
      async (_request, reply) => {
        return reply.type(deps.metrics.contentType).send(await deps.metrics.metrics());
      },
    );
  }

  app.get(
    '/openapi.json',
    { config: { access: 'public' }, schema: { tags, summary: 'This API as an OpenAPI 3.1 document', hide: true } },
    async () => app.swagger(),
  );
}
