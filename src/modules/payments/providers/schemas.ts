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

export const SandboxChargeSchema = Type.Object(
  {
    id: Type.String({ description: "The processor's charge id: the providerRef of the payment" }),
    idempotencyKey: Type.String({ description: 'The key the charge request carried; one charge per key' }),
    orderId: Type.String({ description: 'The order id the caller sent as metadata' }),
    amount: MoneySchema,
    status: ChargeStatus,
    declineReason: Type.Union([Type.String(), Type.Null()]),
    attempts: Type.Integer({ description: 'Requests received with this key, the first included' }),
    refunded: MoneySchema,
    refunds: Type.Array(SandboxRefundSchema, {
      description: 'Refund requests for this charge, oldest first, declined ones included',
    }),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { title: 'SandboxCharge' },
);

export const listSandboxCharges = endpoint({
  operationId: 'listSandboxCharges',
  errors: [],
  method: 'GET',
  url: '/v1/sandbox/charges',
  access: ['admin'],
  tags,
  summary: 'What the sandbox processor charged and refunded, newest first',
  description:
    'One item per idempotency key the processor received, with its refunds. Only the sandbox provider keeps this record.',
  querystring: Type.Object(
    { ...PageQuery.properties, status: Type.Optional(ChargeStatus) },
    { additionalProperties: false },
  ),
  response: { 200: Page(SandboxChargeSchema) },
});

// The outage control, for drills (`engine-room drill`): registered only with the sandbox provider,
// so it cannot exist in a deployment that takes real payments.
const OutageSchema = Type.Object(
  {
    active: Type.Boolean(),
    until: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
      description: 'When the outage ends; null when none is on',
    }),
  },
  { title: 'SandboxOutage' },
);

export const getSandboxOutage = endpoint({
  operationId: 'getSandboxOutage',
  errors: [],
  method: 'GET',
  url: '/v1/sandbox/outage',
  access: ['staff', 'admin'],
  tags,
  summary: 'Whether the sandbox processor is in an outage (a drill), and until when',
  response: { 200: OutageSchema },
});

export const startSandboxOutage = endpoint({
  operationId: 'startSandboxOutage',
  errors: [],
  method: 'PUT',
  url: '/v1/sandbox/outage',
  access: ['admin'],
  tags,
  summary: 'Take the sandbox processor down for a while (a drill)',
  description:
    'Until it ends, every charge request answers "processor unavailable", a transient failure that the charge jobs retry with backoff, as a real processor outage. Only with the sandbox provider; a new outage replaces the one that is on.',
  body: Type.Object(
    { seconds: Type.Integer({ minimum: 1, maximum: 3600, description: 'How long it lasts' }) },
    { additionalProperties: false },
  ),
  response: { 200: OutageSchema },
});

export const endSandboxOutage = endpoint({
  operationId: 'endSandboxOutage',
  errors: [],
  method: 'DELETE',
  url: '/v1/sandbox/outage',
  access: ['admin'],
  tags,
  summary: 'End the sandbox outage now',
  response: { 200: OutageSchema },
});
