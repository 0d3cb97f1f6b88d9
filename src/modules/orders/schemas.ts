import { Type, type Static } from 'typebox';
import { endpoint } from '../../platform/endpoint.ts';
import { IdParams, MoneySchema, Page, PageQuery, Timestamp } from '../../platform/schemas.ts';
import { Sku } from '../catalog/schemas.ts';
import { limits } from '../../limits.ts';

export { limits };

const tags = ['orders'] as const;
const anyone = ['customer', 'staff', 'admin'] as const;

export const OrderSchema = Type.Object({
  id: Type.String(),
  status: Type.Union([Type.Literal('pending_payment'), Type.Literal('paid'), Type.Literal('payment_failed'), Type.Literal('cancelled'), Type.Literal('fulfilled')]),
  customerId: Type.String(),
  lines: Type.Array(Type.Object({ sku: Type.String(), quantity: Type.Integer(), unitPrice: MoneySchema, total: MoneySchema })),
  total: MoneySchema,
  payment: Type.Object({ method: Type.Literal('card') }),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type Order = Static<typeof OrderSchema>;

export const placeOrder = endpoint({
  operationId: 'placeOrder', errors: ['out_of_stock', 'unknown_sku', 'currency_mismatch', 'limit_exceeded', 'email_unverified'],
  example: { body: { lines: [{ sku: 'TEE-M', quantity: 2 }], payment: { method: 'card', token: 'tok_ok' } } },
  method: 'POST', url: '/v1/orders', access: anyone, tags, idempotencyKey: 'required',
  summary: 'Place an order: reserves stock for every line, or none',
  description: [
    'Prices come from the catalog at the time of the order and are frozen on its lines.',
    'Lines naming the same SKU are merged into one line with the summed quantity before the stock check.',
    `At most ${limits.linesPerOrder} distinct SKUs per order and ${limits.quantityPerLine} units per SKU (422 limit_exceeded beyond).`,
    'Not enough stock: 409 out_of_stock, nothing reserved. Unknown or inactive SKU: 422 unknown_sku. Lines in different currencies: 422 currency_mismatch.',
    'The card is charged after the answer, by a worker; follow the status with GET /v1/orders/{id}.',
  ].join('\n\n'),
  body: Type.Object({
    lines: Type.Array(Type.Object({ sku: Sku, quantity: Type.Integer({ minimum: 1, maximum: 1_000_000 }) }, { additionalProperties: false }), { minItems: 1, maxItems: 1000 }),
    payment: Type.Object({ method: Type.Literal('card'), token: Type.String({ minLength: 1, maxLength: 255, pattern: '^[\\x21-\\x7e]+$', description: 'The card token from the payment processor (printable ASCII, no spaces)' }) }, { additionalProperties: false }),
  }, { additionalProperties: false }),
  response: { 201: OrderSchema },
});

export const listOrders = endpoint({
  operationId: 'listOrders', errors: [],
  method: 'GET', url: '/v1/orders', access: anyone, tags,
  summary: 'Orders, newest first: a customer sees their own, staff see all',
  querystring: Type.Object({
    ...PageQuery.properties,
    status: Type.Optional(OrderSchema.properties.status),
    customerId: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: "Staff: only this customer's orders (a customer always sees only their own)" })),
  }, { additionalProperties: false }),
  response: { 200: Page(OrderSchema) },
});

export const getOrder = endpoint({
  operationId: 'getOrder', errors: [],
  example: { params: { id: 'ord_01m8hm273n16kqkhdbgxrwqnng' } },
  method: 'GET', url: '/v1/orders/:id', access: anyone, tags,
  summary: "One order; another customer's order is 404",
  params: IdParams,
  response: { 200: OrderSchema },
});

export const cancelOrder = endpoint({
  operationId: 'cancelOrder', errors: ['invalid_state'],
  example: { params: { id: 'ord_01m8hm273n16kqkhdbgxrwqnng' } },
  method: 'POST', url: '/v1/orders/:id/cancel', access: anyone, tags, idempotencyKey: 'required',
  summary: 'Cancel an order (owner or staff): releases its reservation, or refunds a paid order',
  params: IdParams,
  response: { 200: OrderSchema },
});

export const fulfilOrder = endpoint({
  operationId: 'fulfilOrder', errors: ['invalid_state'],
  example: { params: { id: 'ord_01m8hm273n16kqkhdbgxrwqnng' } },
  method: 'POST', url: '/v1/orders/:id/fulfil', access: ['staff', 'admin'], tags, idempotencyKey: 'optional',
  summary: 'Mark a paid order fulfilled',
  params: IdParams,
  response: { 200: OrderSchema },
});
