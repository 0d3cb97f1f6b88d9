// The sandbox processor's outage control (drills). app.ts registers it only when the sandbox is the
// payment provider: with a real processor these routes do not exist.
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Db } from '../../platform/db.ts';
import { principalOf } from '../../platform/auth.ts';
import { routeOf } from '../../platform/endpoint.ts';
import { endOutage, outageUntil, outageView, startOutage } from './providers/outage.ts';
import * as s from './providers/schemas.ts';

export function sandboxOutageRoutes(app: FastifyInstance, { db }: { db: Db }): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  r.route({ ...routeOf(s.getSandboxOutage), handler: async () => outageView(await outageUntil(db)) });
  r.route({
    ...routeOf(s.startSandboxOutage),
    handler: async (request) => {
      const until = await startOutage(db, request.body.seconds, principalOf(request).userId);
      request.log.warn({ until }, 'sandbox processor outage started (a drill)');
      return outageView(until);
    },
  });
  r.route({
    ...routeOf(s.endSandboxOutage),
    handler: async () => {
      await endOutage(db);
      return outageView(null);
    },
  });
}
