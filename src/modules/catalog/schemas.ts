import { Type, type Static } from 'typebox';
import { endpoint } from '../../platform/endpoint.ts';
import { IdParams, MoneySchema, moneyUpTo, Page, PageQuery, Timestamp } from '../../platform/schemas.ts';
import { maxUnitPrice } from '../../limits.ts';

const tags = ['catalog'] as const;
const staff = ['staff', 'admin'] as const;

/**
 * The most units of one SKU on hand. Stock columns are 32-bit (at most 2,147,483,647): stock
 * starts at most here, an adjustment may not take it past here, and the headroom above it takes
 * the units that cancelled paid orders bring back (an order returns at most what it took).
 */
export const maxOnHand = 1_000_000_000;

/** A price: bounded so that no order within the limits can total more than a JS number holds exactly. */
export const PriceSchema = moneyUpTo(maxUnitPrice);

export const Sku = Type.String({
  maxLength: 64,
  pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$',
  description: 'Letters, digits, dot, dash and underscore; up to 64',
});

export const VariantSchema = Type.Object({
  id: Type.String(),
  sku: Sku,
  name: Type.String(),
  price: MoneySchema,
  available: Type.Integer({ description: 'onHand - reserved' }),
});

export const ProductSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  description: Type.String(),
  active: Type.Boolean(),
  variants: Type.Array(VariantSchema),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type Product = Static<typeof ProductSchema>;

export const StockLevelSchema = Type.Object({
  sku: Type.String(),
  onHand: Type.Integer({ minimum: 0 }),
  reserved: Type.Integer({ minimum: 0 }),
  available: Type.Integer({ minimum: 0 }),
});
export type StockLevel = Static<typeof StockLevelSchema>;

export const createProduct = endpoint({
  operationId: 'createProduct',
  errors: ['sku_taken'],
  example: {
    body: {
      name: 'T-shirt',
      variants: [{ sku: 'TEE-M', name: 'Medium', price: { amount: 1999, currency: 'EUR' }, stock: 10 }],
    },
  },
  method: 'POST',
  url: '/v1/products',
  access: staff,
  tags,
  idempotencyKey: 'optional',
  summary: 'Create a product with its variants and their starting stock',
  body: Type.Object(
    {
      name: Type.String({ minLength: 1, maxLength: 200 }),
      description: Type.Optional(Type.String({ maxLength: 5000 })),
      active: Type.Optional(Type.Boolean()),
      variants: Type.Array(
        Type.Object(
          {
            sku: Sku,
            name: Type.Optional(Type.String({ maxLength: 200 })),
            price: PriceSchema,
            stock: Type.Integer({ minimum: 0, maximum: maxOnHand }),
          },
          { additionalProperties: false },
        ),
        { minItems: 1, maxItems: 100 },
      ),
    },
    { additionalProperties: false },
  ),
  response: { 201: ProductSchema },
});

export const listProducts = endpoint({
  operationId: 'listProducts',
  errors: [],
  method: 'GET',
  url: '/v1/products',
  access: 'public',
  tags,
  summary: 'Products, newest first; staff may include inactive ones',
  querystring: Type.Object(
    {
      ...PageQuery.properties,
      includeInactive: Type.Optional(Type.Boolean({ description: 'Staff only: include inactive products' })),
    },
    { additionalProperties: false },
  ),
  response: { 200: Page(ProductSchema) },
});

export const getProduct = endpoint({
  operationId: 'getProduct',
  errors: [],
  method: 'GET',
  url: '/v1/products/:id',
  access: 'public',
  tags,
  summary: 'One product; an inactive one is 404 except to staff',
  params: IdParams,
  response: { 200: ProductSchema },
});

export const updateProduct = endpoint({
  operationId: 'updateProduct',
  errors: ['unknown_sku'],
  example: {
    params: { id: 'prd_01m8hm26xcycv09qxv6cysjef0' },
    body: { variants: [{ sku: 'TEE-M', price: { amount: 2499, currency: 'EUR' } }] },
  },
  method: 'PATCH',
  url: '/v1/products/:id',
  access: staff,
  tags,
  summary: 'Change name, description, active, and variant prices',
  params: IdParams,
  body: Type.Object(
    {
      name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
      description: Type.Optional(Type.String({ maxLength: 5000 })),
      active: Type.Optional(Type.Boolean()),
      variants: Type.Optional(
        Type.Array(Type.Object({ sku: Sku, price: PriceSchema }, { additionalProperties: false }), { maxItems: 100 }),
      ),
    },
    { additionalProperties: false },
  ),
  response: { 200: ProductSchema },
});

export const getStock = endpoint({
  operationId: 'getStock',
  errors: [],
  example: { params: { sku: 'TEE-M' } },
  method: 'GET',
  url: '/v1/inventory/:sku',
  access: staff,
  tags,
  summary: 'Stock level of one SKU',
  params: Type.Object({ sku: Sku }),
  response: { 200: StockLevelSchema },
});

export const listStock = endpoint({
  operationId: 'listStock',
  errors: [],
  method: 'GET',
  url: '/v1/inventory',
  access: staff,
  tags,
  summary: 'Stock levels of every SKU, in SKU order',
  querystring: PageQuery,
  response: { 200: Page(StockLevelSchema) },
});

export const adjustStock = endpoint({
  operationId: 'adjustStock',
  errors: ['insufficient_stock', 'limit_exceeded'],
  example: { params: { sku: 'TEE-M' }, body: { delta: 5, reason: 'Delivery from the supplier' } },
  method: 'POST',
  url: '/v1/inventory/:sku/adjustments',
  access: staff,
  tags,
  idempotencyKey: 'required',
  summary: 'Add or remove stock on hand, with a reason',
  description: `An adjustment that would take onHand below reserved answers 409 insufficient_stock; one that would take it above ${maxOnHand} answers 422 limit_exceeded.`,
  params: Type.Object({ sku: Sku }),
  body: Type.Object(
    {
      delta: Type.Integer({ minimum: -maxOnHand, maximum: maxOnHand, not: { const: 0 } }),
      reason: Type.String({ minLength: 1, maxLength: 500 }),
    },
    { additionalProperties: false },
  ),
  response: { 201: StockLevelSchema },
});

export const StockMovementSchema = Type.Object({
  kind: Type.Union([
    Type.Literal('initial'),
    Type.Literal('adjustment'),
    Type.Literal('reservation'),
    Type.Literal('release'),
    Type.Literal('sale'),
  ]),
  onHandDelta: Type.Integer(),
  reservedDelta: Type.Integer(),
  orderId: Type.Union([Type.String(), Type.Null()]),
  reason: Type.Union([Type.String(), Type.Null()]),
  createdAt: Timestamp,
});

export const listStockMovements = endpoint({
  operationId: 'listStockMovements',
  errors: [],
  example: { params: { sku: 'TEE-M' } },
  method: 'GET',
  url: '/v1/inventory/:sku/movements',
  access: staff,
  tags,
  summary: 'The history that explains a stock level, newest first',
  params: Type.Object({ sku: Sku }),
  querystring: PageQuery,
  response: {
    200: Type.Object({ data: Type.Array(StockMovementSchema), nextCursor: Type.Union([Type.String(), Type.Null()]) }),
  },
});
