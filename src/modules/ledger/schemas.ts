import { Type } from 'typebox';
import { endpoint } from '../../platform/endpoint.ts';

const tags = ['ledger'] as const;

export const ledgerBalances = endpoint({
  operationId: 'ledgerBalances',
  errors: [],
  method: 'GET',
  url: '/v1/ledger/balances',
  access: ['admin'],
  tags,
  summary: 'Balances of the ledger accounts, per currency (integer minor units)',
  description:
    'A capture debits processor_clearing and credits sales; a refund debits refunds and credits processor_clearing. balance = debits - credits.',
  response: {
    200: Type.Object({
      data: Type.Array(
        Type.Object({
          account: Type.String(),
          currency: Type.String(),
          debits: Type.Integer(),
          credits: Type.Integer(),
          balance: Type.Integer(),
        }),
      ),
    }),
  },
});

export const audit = endpoint({
  operationId: 'audit',
  errors: [],
  method: 'GET',
  url: '/v1/admin/audit',
  access: ['admin'],
  tags,
  summary: 'Checks that the books add up: ledger, payments, refunds, stock, processor',
  description:
    "A check of one payment provider's books runs only when that provider is configured; otherwise it is listed with ok: true and `skipped` saying why.",
  response: {
    200: Type.Object({
      ok: Type.Boolean(),
      checks: Type.Array(
        Type.Object({
          name: Type.String(),
          ok: Type.Boolean(),
          skipped: Type.Optional(Type.String({ description: 'Why this check did not run' })),
          violations: Type.Array(Type.Object({}, { additionalProperties: true })),
        }),
      ),
    }),
  },
});
