import { Type } from 'typebox';
import { endpoint } from '../../platform/endpoint.ts';
import { IdParams, MoneySchema, Timestamp } from '../../platform/schemas.ts';

export const PaymentSchema = Type.Object({
  id: Type.String(),
  status: Type.Union([
    Type.Literal('pending'),
    Type.Literal('succeeded'),
    Type.Literal('failed'),
    Type.Literal('refunded'),
  ]),
  amount: MoneySchema,
  attempts: Type.Integer({ description: 'Charge requests sent to the processor so far' }),
  provider: Type.Union([Type.String(), Type.Null()]),
  failure: Type.Union([Type.String(), Type.Null()], {
    description:
      'Why the payment failed, when it did: a short code in our own words (card_declined, insufficient_funds, charge_unconfirmed, ...)',
  }),
  processorMessage: Type.Optional(
    Type.Union([Type.String(), Type.Null()], {
      description: "Staff only: the processor's own message about a failure, as it sent it (untrusted text)",
    }),
  ),
  review: Type.Optional(
    Type.Union([Type.String(), Type.Null()], {
      description:
        'Staff only: why an operator must look at this payment (the audit lists it until cleared); null when nothing is wrong',
    }),
  ),
  providerRef: Type.Optional(
    Type.Union([Type.String(), Type.Null()], {
      description: "Staff only: the processor's id for the charge (for the sandbox, the id in GET /v1/sandbox/charges)",
    }),
  ),
  refund: Type.Optional(
    Type.Union(
      [
        Type.Object({
          id: Type.String(),
          status: Type.Union([Type.Literal('pending'), Type.Literal('succeeded'), Type.Literal('failed')]),
          amount: MoneySchema,
          attempts: Type.Integer({ description: 'Refund requests sent to the processor so far' }),
          providerRef: Type.Union([Type.String(), Type.Null()], { description: "The processor's id for the refund" }),
          failure: Type.Union([Type.String(), Type.Null()]),
          createdAt: Timestamp,
          updatedAt: Timestamp,
        }),
        Type.Null(),
      ],
      { description: 'Staff only: the refund of this payment (at most one: refunds are in full), null when none' },
    ),
  ),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});

export const listOrderPayments = endpoint({
  operationId: 'listOrderPayments',
  errors: [],
  example: { params: { id: 'ord_01m8hm273n16kqkhdbgxrwqnng' } },
  method: 'GET',
  url: '/v1/orders/:id/payments',
  access: ['customer', 'staff', 'admin'],
  tags: ['orders'],
  summary: "An order's payments (owner or staff; another customer's order is 404)",
  params: IdParams,
  response: { 200: Type.Object({ data: Type.Array(PaymentSchema) }) },
});
