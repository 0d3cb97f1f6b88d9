import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Db } from '../../platform/db.ts';
import { routeOf } from '../../platform/endpoint.ts';
import * as s from './schemas.ts';
import { balances } from './ledger.ts';
import { runAudit } from './audit.ts';

export function ledgerRoutes(app: FastifyInstance, { db }: { db: Db }): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  r.route({ ...routeOf(s.ledgerBalances), handler: async () => ({ data: await balances(db) }) });
  r.route({ ...routeOf(s.audit), handler: async () => runAudit(db) as Promise<{ ok: boolean; checks: { name: string; ok: boolean; violations: Record<string, unknown>[] }[] }> });
}
