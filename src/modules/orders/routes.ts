import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Db } from '../../platform/db.ts';
import { routeOf } from '../../platform/endpoint.ts';
import { principalOf, staffOrAbove, type Principal } from '../../platform/auth.ts';
import { idempotent, keyedRequestOf, sendOutcome } from '../../platform/idempotency.ts';
import { decodeCursor } from '../../platform/pagination.ts';
import { currentTraceparent } from '../../platform/tracing.ts';
import { listOrderPayments } from '../payments/schemas.ts';
import { paymentsOfOrder } from '../payments/repo.ts';
import { paymentView } from '../payments/service.ts';
import * as s from './schemas.ts';
import * as orders from './service.ts';
import * as lifecycle from './lifecycle.ts';
import { orderPlacer } from './place.ts';

/** checkBuyer refuses a principal who may not place orders (accounts' email verification; app.ts wires it). */
export function ordersRoutes(app: FastifyInstance, { db, batchConcurrency, onCharge, checkBuyer }: { db: Db; batchConcurrency: number; onCharge?: () => void; checkBuyer?: (principal: Principal) => void }): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  // Orders are written in batches (place.ts), batchConcurrency at a time (PGlite runs one
  // transaction at a time anyway).
  const placer = orderPlacer(db, { concurrency: db.engine === 'pglite' ? 1 : batchConcurrency, maxBatch: 64, onPlaced: onCharge });

  r.route({
    ...routeOf(s.placeOrder),
    handler: async (request, reply) => {
      checkBuyer?.(principalOf(request));
      const { outcome, replayed } = await placer.place({
        keyed: keyedRequestOf(request, { required: true })!, principal: principalOf(request), input: request.body, traceparent: currentTraceparent(),
      });
      sendOutcome(reply, outcome, replayed);
    },
  });

  r.route({
    ...routeOf(s.listOrders),
    handler: async (request) => {
      const { limit, cursor, status, customerId } = request.query;
      return orders.listOrders(db, principalOf(request), { limit, status: status ?? null, customerId: customerId ?? null, after: decodeCursor(cursor) });
    },
  });

  r.route({
    ...routeOf(s.getOrder),
    handler: async (request) => orders.getOrder(db, principalOf(request), request.params.id),
  });

  r.route({
    ...routeOf(s.cancelOrder),
    handler: (request, reply) => idempotent(db, request, reply, { required: true }, async (tx) => ({
      status: 200, body: await lifecycle.cancelOrder(tx, principalOf(request), request.params.id),
    })),
  });

  r.route({
    ...routeOf(s.fulfilOrder),
    handler: (request, reply) => idempotent(db, request, reply, { required: false }, async (tx) => ({
      status: 200, body: await lifecycle.fulfilOrder(tx, request.params.id),
    })),
  });

  r.route({
    ...routeOf(listOrderPayments),
    handler: async (request) => {
      // getOrder answers 404 for an order this principal may not see.
      const principal = principalOf(request);
      const order = await orders.getOrder(db, principal, request.params.id);
      const staff = staffOrAbove(principal.role);
      return { data: (await paymentsOfOrder(db, order.id)).map((p) => paymentView(p, staff)) };
    },
  });
}
