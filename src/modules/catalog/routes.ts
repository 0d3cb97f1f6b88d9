import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Db } from '../../platform/db.ts';
import { routeOf } from '../../platform/endpoint.ts';
import { principalOf } from '../../platform/auth.ts';
import { idempotent } from '../../platform/idempotency.ts';
import { decodeCursor, pageOf } from '../../platform/pagination.ts';
import { AppError } from '../../errors.ts';
import * as s from './schemas.ts';
import * as catalog from './service.ts';
import * as inventory from './inventory.ts';

function decodeSkuCursor(cursor: string | undefined): string | null {
  if (cursor === undefined) return null;
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!text.startsWith('sku:') || text.length > 68)
    throw new AppError('validation_failed', 'The cursor is not one this API gave out', {
      errors: [{ path: '/query/cursor', message: 'is invalid' }],
    });
  return text.slice(4);
}

function decodeMovementCursor(cursor: string | undefined): number | null {
  if (cursor === undefined) return null;
  const n = Number(Buffer.from(cursor, 'base64url').toString('utf8').replace(/^mov:/, ''));
  if (!Number.isSafeInteger(n) || n < 1)
    throw new AppError('validation_failed', 'The cursor is not one this API gave out', {
      errors: [{ path: '/query/cursor', message: 'is invalid' }],
    });
  return n;
}

export function catalogRoutes(app: FastifyInstance, { db }: { db: Db }): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.route({
    ...routeOf(s.createProduct),
    handler: (request, reply) =>
      idempotent(db, request, reply, { required: false }, async (tx) => ({
        status: 201,
        body: await catalog.createProduct(tx, principalOf(request), request.body),
      })),
  });

  r.route({
    ...routeOf(s.listProducts),
    handler: async (request) => {
      const { limit, cursor, includeInactive } = request.query;
      const { products, more } = await catalog.listProducts(db, request.principal, {
        after: decodeCursor(cursor),
        limit,
        includeInactive: includeInactive ?? false,
      });
      const last = products[products.length - 1];
      return { data: products, nextCursor: more && last ? Buffer.from(last.id).toString('base64url') : null };
    },
  });

  r.route({
    ...routeOf(s.getProduct),
    handler: async (request) => catalog.getProduct(db, request.principal, request.params.id),
  });

  r.route({
    ...routeOf(s.updateProduct),
    handler: async (request) => db.transaction((tx) => catalog.updateProduct(tx, request.params.id, request.body)),
  });

  r.route({
    ...routeOf(s.getStock),
    handler: async (request) => {
      const level = await inventory.getStockLevel(db, request.params.sku);
      if (!level) throw new AppError('not_found', `No SKU ${request.params.sku}`);
      return level;
    },
  });

  r.route({
    ...routeOf(s.listStock),
    handler: async (request) => {
      const { limit, cursor } = request.query;
      const rows = await inventory.listStockLevels(db, { after: decodeSkuCursor(cursor), limit });
      const { data, nextCursor } = pageOf(rows, limit, (row) => `sku:${row.sku}`);
      return { data: data.map(inventory.levelView), nextCursor };
    },
  });

  r.route({
    ...routeOf(s.adjustStock),
    handler: (request, reply) =>
      idempotent(db, request, reply, { required: true }, async (tx) => ({
        status: 201,
        body: await inventory.adjustStock(
          tx,
          request.params.sku,
          request.body.delta,
          request.body.reason,
          principalOf(request).userId,
        ),
      })),
  });

  r.route({
    ...routeOf(s.listStockMovements),
    handler: async (request) => {
      const { limit, cursor } = request.query;
      if (!(await inventory.getStockLevel(db, request.params.sku)))
        throw new AppError('not_found', `No SKU ${request.params.sku}`);
      const rows = await inventory.listMovements(db, request.params.sku, decodeMovementCursor(cursor), limit);
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        data: page.map((m) => ({
          kind: m.kind,
          onHandDelta: m.on_hand_delta,
          reservedDelta: m.reserved_delta,
          orderId: m.order_id,
          reason: m.reason,
          createdAt: m.created_at.toISOString(),
        })),
        nextCursor: rows.length > limit && last ? Buffer.from(`mov:${last.id}`).toString('base64url') : null,
      };
    },
  });
}
