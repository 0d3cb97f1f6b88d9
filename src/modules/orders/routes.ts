import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Db } from '../../platform/db.ts';
import { routeOf } from '../../platform/endpoint.ts';
import { principalOf, staffOrAbove, type Principal } from '../../platform/auth.ts';
import { idempotent, keyedRequestOf, sendOutcome } from '../../platform/idempotency.ts';
import { decodeCursor } from '../../platform/pagination.ts';
import { currentTraceparent } from '../../platform/tracing.ts';
import { listOrderPayments } from '../payments/schemas.ts';
import { paymentsOfOrder, refundsOfPayments } from '../payments/repo.ts';
import { entriesOfOrder } from '../ledger/ledger.ts';
import { movementsOfOrder } from '../catalog/inventory.ts';
import { paymentView } from '../payments/service.ts';
import * as s from './schemas.ts';
import * as orders from './service.ts';
import * as lifecycle from './lifecycle.ts';
import { orderPlacer } from './place.ts';
import type { ChargeRetryBudget } from '../payments/outbox.ts';

/** checkBuyer refuses a principal who may not place orders (accounts' email verification; app.ts wires it). */
export function ordersRoutes(
  app: FastifyInstance,
  {
    db,
    batchConcurrency,
    onCharge,
    checkBuyer,
    customerIdOfEmail,
    chargeRetryBudget,
  }: {
    db: Db;
    batchConcurrency: number;
    /** The retry budget of a charge job by its payment token (payments/outbox.ts); the queue's when unset. */
    chargeRetryBudget?: ChargeRetryBudget;
    onCharge?: () => void;
    checkBuyer?: (principal: Principal) => void;
    customerIdOfEmail: orders.CustomerIdOfEmail;
  },
): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  // Orders are written in batches (place.ts), batchConcurrency at a time (PGlite runs one
  // transaction at a time anyway).
  const placer = orderPlacer(db, {
    concurrency: db.engine === 'pglite' ? 1 : batchConcurrency,
    maxBatch: 64,
    onPlaced: onCharge,
    chargeRetryBudget,
  });

  r.route({
    ...routeOf(s.placeOrder),
    handler: async (request, reply) => {
      checkBuyer?.(principalOf(request));
      const { outcome, replayed } = await placer.place({
        keyed: keyedRequestOf(request, { required: true })!,
        principal: principalOf(request),
        input: request.body,
        traceparent: currentTraceparent(),
      });
      await sendOutcome(reply, outcome, replayed);
    },
  });

  r.route({
    ...routeOf(s.listOrders),
    handler: async (request) => {
      const { limit, cursor, status, customerId, customerEmail, createdFrom, createdTo, id } = request.query;
      return orders.listOrders(
        db,
        principalOf(request),
        {
          limit,
          status: status ?? null,
          customerId: customerId ?? null,
          customerEmail: customerEmail ?? null,
          id: id ?? null,
          after: decodeCursor(cursor),
          createdFrom: createdFrom === undefined ? null : new Date(createdFrom),
          createdTo: createdTo === undefined ? null : new Date(createdTo),
        },
        customerIdOfEmail,
      );
    },
  });

  r.route({
    ...routeOf(s.getOrder),
    handler: async (request) => orders.getOrder(db, principalOf(request), request.params.id),
  });

  r.route({
    ...routeOf(s.cancelOrder),
    handler: (request, reply) =>
      idempotent(db, request, reply, { required: true }, async (tx) => ({
        status: 200,
        body: await lifecycle.cancelOrder(tx, principalOf(request), request.params.id),
      })),
  });

  r.route({
    ...routeOf(s.fulfilOrder),
    handler: (request, reply) =>
      idempotent(db, request, reply, { required: false }, async (tx) => ({
        status: 200,
        body: await lifecycle.fulfilOrder(tx, request.params.id),
      })),
  });

  r.route({
    ...routeOf(listOrderPayments),
    handler: async (request) => {
      // getOrder answers 404 for an order this principal may not see.
      const principal = principalOf(request);
      const order = await orders.getOrder(db, principal, request.params.id);
      const staff = staffOrAbove(principal.role);
      const payments = await paymentsOfOrder(db, order.id);
      const refunds = staff
        ? await refundsOfPayments(
            db,
            payments.map((p) => p.id),
          )
        : [];
      return { data: payments.map((p) => paymentView(p, staff, refunds.find((r) => r.payment_id === p.id) ?? null)) };
    },
  });

  r.route({
    ...routeOf(s.listOrderHistory),
    handler: async (request) => ({ data: await orders.orderHistory(db, principalOf(request), request.params.id) }),
  });

  // The ledger's and the stock's view of one order live here, not in their modules: orders may
  // import both (.dependency-cruiser.js), and the order's 404 is decided in one place.
  r.route({
    ...routeOf(s.listOrderLedgerEntries),
    handler: async (request) => {
      const order = await orders.getOrder(db, principalOf(request), request.params.id);
      const entries = await entriesOfOrder(db, order.id);
      return {
        data: entries.map((e) => ({
          transactionId: e.transaction_id,
          kind: e.kind,
          paymentId: e.payment_id,
          account: e.account,
          debit: { amount: e.debit, currency: e.currency },
          credit: { amount: e.credit, currency: e.currency },
          createdAt: e.created_at.toISOString(),
        })),
      };
    },
  });

  r.route({
    ...routeOf(s.listOrderStockMovements),
    handler: async (request) => {
      const order = await orders.getOrder(db, principalOf(request), request.params.id);
      const movements = await movementsOfOrder(db, order.id);
      return {
        data: movements.map((m) => ({
          sku: m.sku,
          kind: m.kind,
          onHandDelta: m.on_hand_delta,
          reservedDelta: m.reserved_delta,
          orderId: m.order_id,
          reason: m.reason,
          createdAt: m.created_at.toISOString(),
        })),
      };
    },
  });
}
