// The sandbox processor's one endpoint: what it actually charged and refunded, so anyone can
// reconcile it against orders and the ledger. Stripe has its own dashboard; this is ours.
import { Type } from 'typebox';
import { endpoint } from '../../../platform/endpoint.ts';
import { MoneySchema, Page, PageQuery, Timestamp } from '../../../platform/schemas.ts';

const tags = ['sandbox'] as const;

const ChargeStatus = Type.Union([Type.Literal('pending'), Type.Literal('succeeded'), Type.Literal('declined')], {
  description: 'pending: seen but not settled (a transient failure so far); succeeded and declined are final',
});

const SandboxRefundSchema = Type.Object({
  id: Type.String(),
  idempotencyKey: Type.String(),
  amount: MoneySchema,
  status: Type.Union([Type.Literal('succeeded'), Type.Literal('declined')]),
  declineReason: Type.Union([Type.String(), Type.Null()]),
  createdAt: Timestamp,
});

export const SandboxChargeSchema = Type.Object({
  id: Type.String({ description: "The processor's charge id: the providerRef of the payment" }),
  idempotencyKey: Type.String({ description: 'The key the charge request carried; one charge per key' }),
  orderId: Type.String({ description: 'The order id the caller sent as metadata' }),
  amount: MoneySchema,
  status: ChargeStatus,
  declineReason: Type.Union([Type.String(), Type.Null()]),
  attempts: Type.Integer({ description: 'Requests received with this key, the first included' }),
  refunded: MoneySchema,
  refunds: Type.Array(SandboxRefundSchema, { description: 'Refund requests for this charge, oldest first, declined ones included' }),
  createdAt: Timestamp,
  updatedAt: Timestamp,
}, { title: 'SandboxCharge' });

export const listSandboxCharges = endpoint({
  operationId: 'listSandboxCharges', errors: [],
  method: 'GET', url: '/v1/sandbox/charges', access: ['admin'], tags,
  summary: 'What the sandbox processor charged and refunded, newest first',
  description: 'One item per idempotency key the processor received, with its refunds. Only the sandbox provider keeps this record.',
  querystring: Type.Object({ ...PageQuery.properties, status: Type.Optional(ChargeStatus) }, { additionalProperties: false }),
  response: { 200: Page(SandboxChargeSchema) },
});
