import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Db } from '../../platform/db.ts';
import { routeOf } from '../../platform/endpoint.ts';
import * as s from './schemas.ts';
import { balances } from './ledger.ts';
import { runAudit, type AuditOptions } from './audit.ts';

export function ledgerRoutes(
  app: FastifyInstance,
  { db, paymentProvider }: { db: Db; paymentProvider: AuditOptions['paymentProvider'] },
): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  r.route({ ...routeOf(s.ledgerBalances), handler: async () => ({ data: await balances(db) }) });
  r.route({
    ...routeOf(s.audit),
    handler: async () =>
      runAudit(db, { paymentProvider }) as Promise<{
        ok: boolean;
        checks: { name: string; ok: boolean; skipped?: string; violations: Record<string, unknown>[] }[];
      }>,
  });
}
