// Health, readiness, metrics and the OpenAPI document: what an operator and a load balancer need.
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { Db } from './db.ts';
import { migrationsCurrent, type Migration } from './migrate.ts';
import { problem } from '../errors.ts';
import { sendProblem } from './http.ts';
import { Type } from 'typebox';
import { ProblemSchema } from './schemas.ts';

export function operationsRoutes(app: FastifyInstance, deps: { db: Db; migrations: Migration[]; metrics: Registry }): void {
  const config = { access: 'public' as const };
  const tags = ['operations'];

  app.get('/healthz', {
    config,
    schema: {
      operationId: 'healthz', tags, summary: 'The process is alive',
      description: 'Answers 200 as long as the process serves HTTP, without touching the database: for a liveness probe.',
      response: { 200: Type.Object({ status: Type.Literal('ok') }) },
    },
  }, async () => ({ status: 'ok' as const }));

  app.get('/readyz', {
    config,
    schema: {
      operationId: 'readyz', tags, summary: 'The database answers and its migrations are current',
      description: 'For a readiness probe: 503 unavailable while the database does not answer or migrations are pending.',
      response: {
        200: Type.Object({ status: Type.Literal('ready') }),
        503: { description: 'Not ready', content: { 'application/problem+json': { schema: ProblemSchema } } },
      },
    },
  }, async (request, reply) => {
    try {
      if (!(await migrationsCurrent(deps.db, deps.migrations))) {
        return sendProblem(reply, problem('unavailable', 'Migrations are pending; run engine-room migrate'));
      }
    } catch (err) {
      request.log.warn({ err }, 'readiness check failed');
      return sendProblem(reply, problem('unavailable', 'The database does not answer'));
    }
    return { status: 'ready' as const };
  });

  app.get('/metrics', { config, schema: { tags, summary: 'Prometheus metrics', hide: true } }, async (_request, reply) => {
    return reply.type(deps.metrics.contentType).send(await deps.metrics.metrics());
  });

  app.get('/openapi.json', { config, schema: { tags, summary: 'This API as an OpenAPI 3.1 document', hide: true } }, async () => app.swagger());
}
