import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Db } from '../../platform/db.ts';
import { routeOf } from '../../platform/endpoint.ts';
import { principalOf, staffOrAbove } from '../../platform/auth.ts';
import { getOrder } from '../orders/service.ts';
import * as s from './schemas.ts';
import { paymentsOfOrder } from './repo.ts';
import { paymentView } from './service.ts';

export function paymentsRoutes(app: FastifyInstance, { db }: { db: Db }): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  r.route({
    ...routeOf(s.listOrderPayments),
    handler: async (request) => {
      // getOrder answers 404 for an order this principal may not see.
      const principal = principalOf(request);
      const order = await getOrder(db, principal, request.params.id);
      const staff = staffOrAbove(principal.role);
      return { data: (await paymentsOfOrder(db, order.id)).map((p) => paymentView(p, staff)) };
    },
  });
}
