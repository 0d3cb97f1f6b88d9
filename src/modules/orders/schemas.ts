import { Type, type Static } from 'typebox';
import { endpoint } from '../../platform/endpoint.ts';
import { IdParams, MoneySchema, Page, PageQuery, Timestamp } from '../../platform/schemas.ts';
import { Sku, StockMovementSchema } from '../catalog/schemas.ts';
import { limits } from '../../limits.ts';

export { limits };

const tags = ['orders'] as const;
const anyone = ['customer', 'staff', 'admin'] as const;

export const OrderSchema = Type.Object({
  id: Type.String(),
  status: Type.Union([
    Type.Literal('pending_payment'),
    Type.Literal('paid'),
    Type.Literal('payment_failed'),
    Type.Literal('cancelled'),
    Type.Literal('fulfilled'),
  ]),
  customerId: Type.String(),
  lines: Type.Array(
    Type.Object({ sku: Type.String(), quantity: Type.Integer(), unitPrice: MoneySchema, total: MoneySchema }),
  ),
  total: MoneySchema,
  payment: Type.Object({ method: Type.Literal('card') }),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type Order = Static<typeof OrderSchema>;

export const placeOrder = endpoint({
  operationId: 'placeOrder',
  errors: ['out_of_stock', 'unknown_sku', 'currency_mismatch', 'limit_exceeded', 'email_unverified'],
  example: { body: { lines: [{ sku: 'TEE-M', quantity: 2 }], payment: { method: 'card', token: 'tok_ok' } } },
  method: 'POST',
  url: '/v1/orders',
  access: anyone,
  tags,
  idempotencyKey: 'required',
  summary: 'Place an order: reserves stock for every line, or none',
  description: [
    'Prices come from the catalog at the time of the order and are frozen on its lines.',
    'Lines naming the same SKU are merged into one line with the summed quantity before the stock check.',
    `A line's quantity is 1 to ${limits.quantityPerLine} (400 validation_failed beyond). At most ${limits.linesPerOrder} distinct SKUs per order and ${limits.quantityPerLine} units of one SKU once its lines are summed (422 limit_exceeded beyond).`,
    'Not enough stock: 409 out_of_stock, nothing reserved. Unknown or inactive SKU: 422 unknown_sku. Lines in different currencies: 422 currency_mismatch.',
    'The card is charged after the answer, by a worker; follow the status with GET /v1/orders/{id}.',
  ].join('\n\n'),
  body: Type.Object(
    {
      lines: Type.Array(
        Type.Object(
          { sku: Sku, quantity: Type.Integer({ minimum: 1, maximum: limits.quantityPerLine }) },
          { additionalProperties: false },
        ),
        { minItems: 1, maxItems: 1000 },
      ),
      payment: Type.Object(
        {
          method: Type.Literal('card'),
          token: Type.String({
            minLength: 1,
            maxLength: 255,
            pattern: '^[\\x21-\\x7e]+$',
            description: 'The card token from the payment processor (printable ASCII, no spaces)',
          }),
        },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false },
  ),
  response: { 201: OrderSchema },
});

export const listOrders = endpoint({
  operationId: 'listOrders',
  errors: [],
  method: 'GET',
  url: '/v1/orders',
  access: anyone,
  tags,
  summary: 'Orders, newest first: a customer sees their own, staff see all',
  description: [
    'Filters combine (all must match). A customer sees only their own orders whatever the filters say.',
    '`customerEmail` matches the email of the account that placed the order exactly, ignoring case (an order placed with an API key has no email).',
    '`createdFrom` is inclusive and `createdTo` exclusive. The cursor continues the same filtered list: send the same filters with it.',
  ].join('\n\n'),
  querystring: Type.Object(
    {
      ...PageQuery.properties,
      status: Type.Optional(OrderSchema.properties.status),
      customerId: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 64,
          description: "Staff: only this customer's orders (a customer always sees only their own)",
        }),
      ),
      customerEmail: Type.Optional(Type.String({ minLength: 1, maxLength: 254 })),
      createdFrom: Type.Optional(
        Type.String({ format: 'date-time', maxLength: 40, description: 'Orders created at or after this time' }),
      ),
      createdTo: Type.Optional(
        Type.String({ format: 'date-time', maxLength: 40, description: 'Orders created before this time' }),
      ),
      id: Type.Optional(
        Type.String({ minLength: 1, maxLength: 64, description: 'One order id: the page holds that order or nothing' }),
      ),
    },
    { additionalProperties: false },
  ),
  response: { 200: Page(OrderSchema) },
});

export const getOrder = endpoint({
  operationId: 'getOrder',
  errors: [],
  example: { params: { id: 'ord_01m8hm273n16kqkhdbgxrwqnng' } },
  method: 'GET',
  url: '/v1/orders/:id',
  access: anyone,
  tags,
  summary: "One order; another customer's order is 404",
  params: IdParams,
  response: { 200: OrderSchema },
});

export const cancelOrder = endpoint({
  operationId: 'cancelOrder',
  errors: ['invalid_state'],
  example: { params: { id: 'ord_01m8hm273n16kqkhdbgxrwqnng' } },
  method: 'POST',
  url: '/v1/orders/:id/cancel',
  access: anyone,
  tags,
  idempotencyKey: 'required',
  summary: 'Cancel an order (owner or staff): releases its reservation, or refunds a paid order',
  params: IdParams,
  response: { 200: OrderSchema },
});

export const fulfilOrder = endpoint({
  operationId: 'fulfilOrder',
  errors: ['invalid_state'],
  example: { params: { id: 'ord_01m8hm273n16kqkhdbgxrwqnng' } },
  method: 'POST',
  url: '/v1/orders/:id/fulfil',
  access: ['staff', 'admin'],
  tags,
  idempotencyKey: 'optional',
  summary: 'Mark a paid order fulfilled',
  params: IdParams,
  response: { 200: OrderSchema },
});

const StatusChangeSchema = Type.Object({
  from: Type.Union([OrderSchema.properties.status, Type.Null()], { description: 'null for the placing of the order' }),
  to: OrderSchema.properties.status,
  at: Timestamp,
});

export const listOrderHistory = endpoint({
  operationId: 'listOrderHistory',
  errors: [],
  example: { params: { id: 'ord_01m8hm273n16kqkhdbgxrwqnng' } },
  method: 'GET',
  url: '/v1/orders/:id/history',
  access: anyone,
  tags,
  summary: "Every change of an order's status with its time, oldest first (owner or staff)",
  description:
    'Kept as long as the order, unlike the events (which retention prunes). Orders from before this history was kept show their placing, the events that were left, and their current status at their last update.',
  params: IdParams,
  response: { 200: Type.Object({ data: Type.Array(StatusChangeSchema) }) },
});

const LedgerEntrySchema = Type.Object({
  transactionId: Type.String(),
  kind: Type.Union([Type.Literal('capture'), Type.Literal('refund')]),
  paymentId: Type.String(),
  account: Type.String(),
  debit: MoneySchema,
  credit: MoneySchema,
  createdAt: Timestamp,
});

export const listOrderLedgerEntries = endpoint({
  operationId: 'listOrderLedgerEntries',
  errors: [],
  example: { params: { id: 'ord_01m8hm273n16kqkhdbgxrwqnng' } },
  method: 'GET',
  url: '/v1/orders/:id/ledger-entries',
  access: ['staff', 'admin'],
  tags,
  summary: "An order's ledger entries, oldest first: each capture and refund as its balanced debit and credit",
  params: IdParams,
  response: { 200: Type.Object({ data: Type.Array(LedgerEntrySchema) }) },
});

export const listOrderStockMovements = endpoint({
  operationId: 'listOrderStockMovements',
  errors: [],
  example: { params: { id: 'ord_01m8hm273n16kqkhdbgxrwqnng' } },
  method: 'GET',
  url: '/v1/orders/:id/stock-movements',
  access: ['staff', 'admin'],
  tags,
  summary: "An order's stock movements, oldest first: its reservation, and the sale or release that settled it",
  params: IdParams,
  response: {
    200: Type.Object({ data: Type.Array(Type.Object({ sku: Type.String(), ...StockMovementSchema.properties })) }),
  },
});
