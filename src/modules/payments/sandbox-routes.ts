// GET /v1/sandbox/charges: the sandbox processor's own record, read through its own statements.
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Db } from '../../platform/db.ts';
import { routeOf } from '../../platform/endpoint.ts';
import { decodeCursor, pageOf } from '../../platform/pagination.ts';
import { sandboxChargesPage } from './providers/sandbox.ts';
import * as s from './providers/schemas.ts';

export function sandboxRoutes(app: FastifyInstance, { db }: { db: Db }): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.route({
    ...routeOf(s.listSandboxCharges),
    handler: async (request) => {
      const { limit, cursor, status } = request.query;
      const rows = await sandboxChargesPage(db, decodeCursor(cursor), limit, status ?? null);
      return pageOf(rows, limit, (row) => row.id);
    },
  });
}
