// Operator endpoints for the job queue: see what is dead-lettered, send it back.
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Db } from '../../platform/db.ts';
import { routeOf } from '../../platform/endpoint.ts';
import { listFailedJobs, retryJob } from '../../platform/queue.ts';
import { AppError } from '../../errors.ts';
import * as s from './schemas.ts';

export function operationsAdminRoutes(app: FastifyInstance, { db }: { db: Db }): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  r.route({
    ...routeOf(s.listFailedJobs),
    handler: async (request) => ({
      data: (await listFailedJobs(db, { limit: request.query.limit, ...(request.query.queue ? { queue: request.query.queue } : {}) }))
        .map((j) => ({ ...j, failedAt: j.failedAt.toISOString() })),
    }),
  });
  r.route({
    ...routeOf(s.retryFailedJob),
    handler: async (request, reply) => {
      const id = await retryJob(db, request.params.id);
      if (!id) throw new AppError('not_found', 'No dead-lettered job with this id');
      return reply.code(202).send({ id });
    },
  });
}
