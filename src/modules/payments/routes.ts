import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Db } from '../../platform/db.js';
import { routeOf } from '../../platform/endpoint.js';
import { principalOf } from '../../platform/auth.js';
import { getOrder } from '../orders/service.js';
import * as s from './schemas.js';
import { paymentsOfOrder } from './repo.js';
import { paymentView } from './service.js';

export function paymentsRoutes(app: FastifyInstance, { db }: { db: Db }): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  r.route({
    ...routeOf(s.listOrderPayments),
    handler: async (request) => {
      // getOrder answers 404 for an order this principal may not see.
      const order = await getOrder(db, principalOf(request), request.params.id);
      return { data: (await paymentsOfOrder(db, order.id)).map(paymentView) };
    },
  });
}
