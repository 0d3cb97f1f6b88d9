// Each audit check is a query that can find a violation: plant that violation (inside a
// transaction that is rolled back afterwards) and the check, and only it, must fail.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine } from './support/app.ts';
import { endpoints } from '../src/client.ts';
import { auditCheckNames, runAudit } from '../src/modules/ledger/audit.ts';
import { chargeOnce } from './support/charge.ts';
import { createSandboxProvider } from '../src/modules/payments/providers/sandbox.ts';
import type { Tx } from '../src/platform/db.ts';
import { maxUnitPrice } from '../src/limits.ts';

class Rollback extends Error {}

forEachEngine('the audit', 'parity', (env) => {
  let paidOrder = '';

  it('passes on healthy books, over HTTP too (admin only)', async () => {
    const e = env();
    await e.product([{ sku: 'AUD', stock: 50, amount: 700 }]);
    const c = await e.customer();
    const o = await e.client.ok(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: 'aud-1',
      body: { lines: [{ sku: 'AUD', quantity: 2 }], payment: { method: 'card', token: 'tok_ok' } },
    });
    const [p] = await e.database.db.query<{ id: string }>('SELECT id FROM payments WHERE order_id = $1', [o.id]);
    await chargeOnce(e.database.db, createSandboxProvider(e.database.db), p!.id);
    paidOrder = o.id;
    await e.client.ok(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: 'aud-2',
      body: { lines: [{ sku: 'AUD', quantity: 1 }], payment: { method: 'card', token: 'tok_ok' } },
    });
    const res = await e.client.ok(endpoints.audit, { token: e.adminToken });
    assert.equal(res.ok, true, JSON.stringify(res.checks.filter((x) => !x.ok)));
    assert.deepEqual(
      res.checks.map((x) => x.name),
      auditCheckNames,
    );
    assert.ok(auditCheckNames.length >= 7);
    assert.equal((await e.client.call(endpoints.audit, { token: c.token })).status, 403);
  });

  const plants: [string, (tx: Tx) => Promise<void>][] = [
    [
      'ledger transactions balance per currency',
      async (tx) => {
        await tx.exec('ALTER TABLE ledger_entries DISABLE TRIGGER USER');
        const [t] = await tx.query<{ id: string }>('SELECT id FROM ledger_transactions LIMIT 1');
        await tx.query(
          "INSERT INTO ledger_entries (transaction_id, account, currency, debit) VALUES ($1, 'sales', 'EUR', 1)",
          [t!.id],
        );
      },
    ],
    [
      'every paid order was charged exactly its total, once',
      async (tx) => {
        await tx.query('UPDATE orders SET total_amount = total_amount + 1 WHERE id = $1', [paidOrder]);
      },
    ],
    [
      'every captured payment of a cancelled order was refunded exactly once, and nothing else was',
      async (tx) => {
        await tx.query("UPDATE payments SET status = 'refunded' WHERE order_id = $1", [paidOrder]);
        await tx.query("UPDATE orders SET status = 'cancelled' WHERE id = $1", [paidOrder]);
      },
    ],
    [
      'no stock level is negative or reserved beyond what is on hand',
      async (tx) => {
        await tx.exec('ALTER TABLE stock_levels DROP CONSTRAINT stock_reserved_within_on_hand');
        await tx.query("UPDATE stock_levels SET reserved = on_hand + 1 WHERE sku = 'AUD'");
        await tx.query(
          "INSERT INTO stock_movements (sku, kind, on_hand_delta, reserved_delta) SELECT 'AUD', 'reservation', 0, on_hand + 1 - reserved FROM stock_levels WHERE false",
        );
      },
    ],
    [
      'reserved equals the sum of open reservations',
      async (tx) => {
        await tx.query("UPDATE stock_levels SET reserved = reserved + 1 WHERE sku = 'AUD'");
        await tx.query(
          "INSERT INTO stock_movements (sku, kind, on_hand_delta, reserved_delta) VALUES ('AUD', 'reservation', 0, 1)",
        );
      },
    ],
    [
      'onHand equals starting stock plus adjustments minus sales',
      async (tx) => {
        await tx.query("UPDATE stock_levels SET on_hand = on_hand + 5 WHERE sku = 'AUD'");
      },
    ],
    [
      "every order's total is the sum of its lines",
      async (tx) => {
        await tx.query(`UPDATE orders SET total_amount = total_amount + 1 WHERE status = 'pending_payment'`);
      },
    ],
    [
      'every amount is within the bounds the API accepts (prices, and totals a number holds exactly)',
      async (tx) => {
        await tx.query(`UPDATE variants SET price_amount = $1 WHERE sku = 'AUD'`, [maxUnitPrice + 1]);
      },
    ],
    [
      "no payment awaits an operator's review",
      async (tx) => {
        await tx.query(`UPDATE payments SET review_reason = 'planted' WHERE order_id = $1`, [paidOrder]);
      },
    ],
    [
      'what the processor charged equals what the ledger captured (sandbox provider)',
      async (tx) => {
        await tx.query(
          "INSERT INTO sandbox_charges (id, idempotency_key, order_id, amount, currency, token, status) VALUES ('sch_planted', 'planted', $1, 700, 'EUR', 'tok_ok', 'succeeded')",
          [paidOrder],
        );
      },
    ],
  ];

  it("runs a check of the sandbox processor's books only with the sandbox provider, and says why it skipped it", async () => {
    const { database } = env();
    const sandboxCheck = 'what the processor charged equals what the ledger captured (sandbox provider)';
    await assert.rejects(
      database.db.transaction(async (tx) => {
        await plants.find(([name]) => name === sandboxCheck)![1](tx);
        assert.equal((await runAudit(tx, { paymentProvider: 'sandbox' })).ok, false);
        const underStripe = await runAudit(tx, { paymentProvider: 'stripe' });
        assert.equal(underStripe.ok, true);
        const skipped = underStripe.checks.filter((c) => c.skipped);
        assert.deepEqual(
          skipped.map((c) => [c.name, c.ok, c.violations]),
          [[sandboxCheck, true, []]],
        );
        assert.match(skipped[0]!.skipped!, /sandbox.*stripe/);
        throw new Rollback();
      }),
      Rollback,
    );
  });

  it('shows at most 20 violations of a check, however many there are', async () => {
    const { database } = env();
    const skus = Array.from({ length: 25 }, (_, i) => `AUD-MANY-${i}`);
    await env().product(skus.map((sku) => ({ sku, stock: 1 })));
    await assert.rejects(
      database.db.transaction(async (tx) => {
        await tx.query(
          "INSERT INTO stock_movements (sku, kind, on_hand_delta, reserved_delta, reason) SELECT unnest($1::text[]), 'adjustment', 1, 0, 'planted'",
          [skus],
        );
        const check = (await runAudit(tx, { paymentProvider: 'sandbox' })).checks.find(
          (c) => c.name === 'onHand equals starting stock plus adjustments minus sales',
        )!;
        assert.equal(check.ok, false);
        assert.equal(check.violations.length, 20);
        throw new Rollback();
      }),
      Rollback,
    );
  });

  it('a check that cannot run fails with the reason, and the others still run', async () => {
    const { database } = env();
    const paidCheck = 'every paid order was charged exactly its total, once';
    await assert.rejects(
      database.db.transaction(async (tx) => {
        // A paid order whose total no number can hold (a database from before the bounds): the check
        // that reads it as a number cannot run.
        await tx.exec('ALTER TABLE orders DROP CONSTRAINT orders_total_amount_exact');
        await tx.query('UPDATE orders SET total_amount = 9007199254740993 WHERE id = $1', [paidOrder]);
        const result = await runAudit(tx, { paymentProvider: 'sandbox' });
        assert.deepEqual(
          result.checks.map((c) => c.name),
          auditCheckNames,
          'every check still ran',
        );
        assert.deepEqual(result.checks.find((c) => c.name === paidCheck)!.violations, [
          {
            error:
              'the check could not run: int8 value 9007199254740993 is beyond what a JavaScript number holds exactly (2^53 - 1)',
          },
        ]);
        assert.ok(
          !result.checks.find((c) => c.name === "every order's total is the sum of its lines")!.ok,
          'a later check saw the order too',
        );
        throw new Rollback();
      }),
      Rollback,
    );
  });

  for (const [name, plant] of plants) {
    it(`finds a planted violation: ${name}`, async () => {
      const { database } = env();
      await assert.rejects(
        database.db.transaction(async (tx) => {
          await plant(tx);
          const result = await runAudit(tx, { paymentProvider: 'sandbox' });
          const failed = result.checks.filter((c) => !c.ok).map((c) => c.name);
          assert.equal(result.ok, false);
          assert.ok(failed.includes(name), `expected "${name}" to fail; failed: ${failed.join('; ')}`);
          const check = result.checks.find((c) => c.name === name)!;
          assert.ok(check.violations.length > 0);
          throw new Rollback();
        }),
        Rollback,
      );
      assert.equal(
        (await runAudit(database.db, { paymentProvider: 'sandbox' })).ok,
        true,
        'the planted violation is gone again',
      );
    });
  }
});
