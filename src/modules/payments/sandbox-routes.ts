// GET /v1/sandbox/charges: the sandbox processor's own record, read through its own statements.
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Db } from '../../platform/db.js';
import { routeOf } from '../../platform/endpoint.js';
import { decodeCursor, pageOf } from '../../platform/pagination.js';
import { sandboxChargesPage } from './providers/sandbox.js';
import * as s from './providers/schemas.js';

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
