import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Db } from '../../platform/db.ts';
import { routeOf } from '../../platform/endpoint.ts';
import { principalOf } from '../../platform/auth.ts';
import { idempotent, keyedRequestOf, sendOutcome } from '../../platform/idempotency.ts';
import { decodeCursor } from '../../platform/pagination.ts';
import { currentTraceparent } from '../../platform/tracing.ts';
import * as s from './schemas.ts';
import * as orders from './service.ts';
import { orderPlacer } from './place.ts';

export function ordersRoutes(app: FastifyInstance, { db, batchConcurrency, onCharge }: { db: Db; batchConcurrency: number; onCharge?: () => void }): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  // Orders are written in batches (place.ts), batchConcurrency at a time (PGlite runs one
  // transaction at a time anyway).
  const placer = orderPlacer(db, { concurrency: db.engine === 'pglite' ? 1 : batchConcurrency, maxBatch: 64, onPlaced: onCharge });

  r.route({
    ...routeOf(s.placeOrder),
    handler: async (request, reply) => {
      const { outcome, replayed } = await placer.place({
        keyed: keyedRequestOf(request, { required: true })!, principal: principalOf(request), input: request.body, traceparent: currentTraceparent(),
      });
      sendOutcome(reply, outcome, replayed);
    },
  });

  r.route({
    ...routeOf(s.listOrders),
    handler: async (request) => {
      const { limit, cursor, status } = request.query;
      return orders.listOrders(db, principalOf(request), { limit, status: status ?? null, after: decodeCursor(cursor) });
    },
  });

  r.route({
    ...routeOf(s.getOrder),
    handler: async (request) => orders.getOrder(db, principalOf(request), request.params.id),
  });

  r.route({
    ...routeOf(s.cancelOrder),
    handler: (request, reply) => idempotent(db, request, reply, { required: true }, async (tx) => ({
      status: 200, body: await orders.cancelOrder(tx, principalOf(request), request.params.id),
    })),
  });

  r.route({
    ...routeOf(s.fulfilOrder),
    handler: (request, reply) => idempotent(db, request, reply, { required: false }, async (tx) => ({
      status: 200, body: await orders.fulfilOrder(tx, request.params.id),
    })),
  });
}
