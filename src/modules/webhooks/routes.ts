import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Db } from '../../platform/db.ts';
import { routeOf } from '../../platform/endpoint.ts';
import { idempotent } from '../../platform/idempotency.ts';
import { decodeCursor, pageOf } from '../../platform/pagination.ts';
import * as s from './schemas.ts';
import * as webhooks from './service.ts';
import { listEndpoints } from './repo.ts';

export function webhooksRoutes(app: FastifyInstance, { db, policy }: { db: Db; policy: webhooks.UrlPolicy }): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.route({
    ...routeOf(s.createWebhookEndpoint),
    handler: (request, reply) =>
      idempotent(db, request, reply, { required: false }, async (tx) => ({
        status: 201,
        body: await webhooks.createEndpoint(tx, request.body, policy),
      })),
  });

  r.route({
    ...routeOf(s.listWebhookEndpoints),
    handler: async (request) => {
      const { limit, cursor } = request.query;
      const page = pageOf(await listEndpoints(db, decodeCursor(cursor), limit), limit, (row) => row.id);
      return { data: page.data.map((row) => webhooks.endpointView(row)), nextCursor: page.nextCursor };
    },
  });

  r.route({
    ...routeOf(s.getWebhookEndpoint),
    handler: async (request) => webhooks.getEndpoint(db, request.params.id),
  });

  r.route({
    ...routeOf(s.updateWebhookEndpoint),
    handler: async (request) => webhooks.updateEndpoint(db, request.params.id, request.body, policy),
  });

  r.route({
    ...routeOf(s.rotateWebhookSecret),
    // Its answer carries the new secret: stored under the Idempotency-Key sealed by that key
    // (idempotency.ts), and sent with Cache-Control: no-store (returnsSecret), replays included.
    handler: (request, reply) =>
      idempotent(db, request, reply, { required: false }, async (tx) => ({
        status: 200,
        body: await webhooks.rotateSecret(tx, request.params.id, request.body.gracePeriodSeconds ?? 86_400),
      })),
  });

  r.route({
    ...routeOf(s.deleteWebhookEndpoint),
    handler: async (request, reply) => {
      await webhooks.deleteEndpoint(db, request.params.id);
      return reply.code(204).send(null);
    },
  });

  r.route({
    ...routeOf(s.listDeliveryAttempts),
    handler: async (request) => {
      const { limit, cursor, eventId } = request.query;
      const rows = await webhooks.listAttempts(db, request.params.id, {
        eventId: eventId ?? null,
        after: decodeCursor(cursor),
        limit,
      });
      const page = pageOf(rows, limit, (row) => row.id);
      return { data: page.data.map(webhooks.attemptView), nextCursor: page.nextCursor };
    },
  });

  r.route({
    ...routeOf(s.getWebhookDelivery),
    handler: async (request) => webhooks.getDelivery(db, request.params.id, request.params.eventId),
  });

  r.route({
    ...routeOf(s.redeliverEvent),
    handler: (request, reply) =>
      idempotent(db, request, reply, { required: false }, async (tx) => ({
        status: 202,
        body: await webhooks.redeliver(tx, request.params.id, request.params.eventId),
      })),
  });
}
