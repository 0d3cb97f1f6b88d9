// Schemas shared by every module: problems, money, ids, pagination. TypeBox builds JSON Schema
// that validates, types the handlers and feeds the OpenAPI document.
import { Type, type Static, type TSchema } from 'typebox';

export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    code: Type.String({ description: 'Stable, machine-readable error code' }),
    detail: Type.Optional(Type.String()),
    errors: Type.Optional(Type.Array(Type.Object({ path: Type.String(), message: Type.String() }))),
  },
  { title: 'Problem' },
);

/**
 * Money of at most `maximum` minor units. Answers use the default, what a JS number holds
 * exactly; inputs pass the bound their domain derives (a price: src/limits.ts).
 */
export function moneyUpTo(maximum = Number.MAX_SAFE_INTEGER) {
  return Type.Object(
    {
      amount: Type.Integer({ minimum: 0, maximum, description: 'Integer count of minor units (cents)' }),
      currency: Type.String({ pattern: '^[A-Z]{3}$', maxLength: 3, description: 'ISO 4217 code' }),
    },
    { additionalProperties: false },
  );
}

export const MoneySchema = moneyUpTo();
export type Money = Static<typeof MoneySchema>;

export const Timestamp = Type.String({ format: 'date-time' });

/**
 * A path parameter cannot be "." or "..": every URL parser, clients' included, removes such a
 * segment (RFC 3986), so the request would reach another route.
 */
export const notDotSegment = '^(?!\\.\\.?$)';

export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64, pattern: notDotSegment }) });

export const PageQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
    cursor: Type.Optional(
      Type.String({
        maxLength: 200,
        pattern: '^[A-Za-z0-9_-]*$',
        description: 'The nextCursor of the page before (opaque); any other answers 400 validation_failed',
      }),
    ),
  },
  { additionalProperties: false },
);

export function Page<T extends TSchema>(item: T) {
  return Type.Object({ data: Type.Array(item), nextCursor: Type.Union([Type.String(), Type.Null()]) });
}

/** Idempotency-Key, as the contract defines it: 1 to 255 printable characters. */
export const idempotencyKeyPattern = /^[\x20-\x7e]{1,255}$/;
