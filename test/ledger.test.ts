// The ledger's own guards, in the database (migration 0006): a transaction whose debits and credits
// differ in any currency cannot commit (a deferred constraint trigger), and entries are never
// changed or removed (a trigger). Tried here by direct SQL, past all of our code.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine, type TestEnv } from './support/app.ts';
import { endpoints } from '../src/client.ts';
import { newId } from '../src/platform/ids.ts';
import type { Tx } from '../src/platform/db.ts';

/** An order and its payment, for the ledger rows to refer to. */
async function orderAndPayment(e: TestEnv): Promise<{ orderId: string; paymentId: string }> {
  const c = await e.customer();
  const order = await e.client.ok(endpoints.placeOrder, {
    token: c.token,
    idempotencyKey: newId('ord'),
    body: { lines: [{ sku: 'LEDGER', quantity: 1 }], payment: { method: 'card', token: 'tok_ok' } },
  });
  const [payment] = await e.database.db.query<{ id: string }>('SELECT id FROM payments WHERE order_id = $1', [
    order.id,
  ]);
  return { orderId: order.id, paymentId: payment!.id };
}

async function post(
  tx: Tx,
  ids: { orderId: string; paymentId: string },
  entries: [account: string, currency: string, debit: number, credit: number][],
): Promise<string> {
  const id = newId('txn');
  await tx.query(`INSERT INTO ledger_transactions (id, kind, order_id, payment_id) VALUES ($1, 'capture', $2, $3)`, [
    id,
    ids.orderId,
    ids.paymentId,
  ]);
  for (const [account, currency, debit, credit] of entries) {
    await tx.query(
      'INSERT INTO ledger_entries (transaction_id, account, currency, debit, credit) VALUES ($1, $2, $3, $4, $5)',
      [id, account, currency, debit, credit],
    );
  }
  return id;
}

const entriesOf = (e: TestEnv, id: string) =>
  e.database.db.query(
    'SELECT account, currency, debit, credit FROM ledger_entries WHERE transaction_id = $1 ORDER BY id',
    [id],
  );

forEachEngine('the ledger in the database', 'parity', (env) => {
  it('refuses to commit a transaction whose debits and credits differ, in total or in any one currency', async () => {
    const e = env();
    await e.product([{ sku: 'LEDGER', stock: 100 }]);
    for (const entries of [
      [['processor_clearing', 'EUR', 1000, 0]],
      [
        ['processor_clearing', 'EUR', 1000, 0],
        ['sales', 'EUR', 0, 999],
      ],
      [
        ['processor_clearing', 'EUR', 1000, 0],
        ['sales', 'USD', 0, 1000],
      ],
    ] as [string, string, number, number][][]) {
      const ids = await orderAndPayment(e);
      let attempted = '';
      await assert.rejects(
        e.database.db.transaction(async (tx) => {
          attempted = await post(tx, ids, entries);
        }),
        /is not balanced/,
      );
      assert.deepEqual(
        await e.database.db.query('SELECT 1 FROM ledger_transactions WHERE id = $1', [attempted]),
        [],
        'nothing of it was kept',
      );
    }
    // The same statements, balanced, commit.
    const ids = await orderAndPayment(e);
    const id = await e.database.db.transaction((tx) =>
      post(tx, ids, [
        ['processor_clearing', 'EUR', 1000, 0],
        ['sales', 'EUR', 0, 1000],
      ]),
    );
    assert.equal((await entriesOf(e, id)).length, 2);
  });

  it('refuses to change or remove an entry', async () => {
    const e = env();
    const ids = await orderAndPayment(e);
    const id = await e.database.db.transaction((tx) =>
      post(tx, ids, [
        ['processor_clearing', 'EUR', 500, 0],
        ['sales', 'EUR', 0, 500],
      ]),
    );
    const before = await entriesOf(e, id);
    await assert.rejects(
      e.database.db.query(
        'UPDATE ledger_entries SET debit = debit + 1, credit = credit + 1 WHERE transaction_id = $1',
        [id],
      ),
      /append-only/,
    );
    await assert.rejects(
      e.database.db.query(`UPDATE ledger_entries SET account = 'refunds' WHERE transaction_id = $1`, [id]),
      /append-only/,
    );
    await assert.rejects(
      e.database.db.query('DELETE FROM ledger_entries WHERE transaction_id = $1', [id]),
      /append-only/,
    );
    await assert.rejects(
      e.database.db.transaction(async (tx) => {
        await tx.query('DELETE FROM ledger_entries WHERE transaction_id = $1', [id]);
      }),
      /append-only/,
    );
    assert.deepEqual(await entriesOf(e, id), before);
  });
});
