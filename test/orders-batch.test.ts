// Orders are written in batches (src/modules/orders/place.ts). These tests drive the batcher
// directly, on the real database, with a Db that counts transactions and can make one request's
// statement fail, to check that a batch really groups requests and that grouping never changes an
// answer: each request is decided on its own, a duplicate key replays, and a fault in one request
// does not fail the others.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine } from './support/app.ts';
import { orderPlacer, type Answer, type OrderRequest } from '../src/modules/orders/place.ts';
import { requestHash } from '../src/platform/idempotency.ts';
import type { Db, Tx } from '../src/platform/db.ts';
import { assertStockExplained } from './support/stock.ts';
import { waitFor } from './support/wait.ts';

/** db, counting transactions, with every statement that carries `poison` in a parameter failing. */
function instrumented(db: Db, poison: string) {
  const counts = { transactions: 0 };
  const carriesPoison = (params?: readonly unknown[]) => JSON.stringify(params ?? []).includes(poison);
  const wrapped: Db = {
    ...db,
    transaction: (fn) => {
      counts.transactions++;
      return db.transaction((tx) =>
        fn({
          ...tx,
          query: async <T>(text: string, params?: readonly unknown[]) => {
            if (carriesPoison(params)) throw new Error('injected fault');
            return tx.query<T>(text, params);
          },
        } as Tx),
      );
    },
  };
  return { db: wrapped, counts };
}

function request(
  customer: { id: string },
  key: string,
  lines: { sku: string; quantity: number }[],
  token = 'tok_ok',
): OrderRequest {
  const input = { lines, payment: { method: 'card' as const, token } };
  return {
    keyed: { principalId: customer.id, key, hash: requestHash('POST', '/v1/orders', input) },
    principal: { userId: customer.id, role: 'customer', via: 'session', credentialId: 'ses_test' },
    input,
  };
}

const settled = <T>(promises: Promise<T>[]) => Promise.allSettled(promises);

/** A transaction of its own that has run the statements and holds their locks until commit() (which answers once it has committed). */
async function holdInTransaction(db: Db, statements: string[]): Promise<{ commit: () => Promise<void> }> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let holding!: () => void;
  const held = new Promise<void>((resolve) => {
    holding = resolve;
  });
  const done = db.transaction(async (tx) => {
    for (const text of statements) await tx.query(text);
    holding();
    await released;
  });
  await Promise.race([held, done]);
  return {
    commit: () => {
      release();
      return done;
    },
  };
}

/** true once a statement of this database waits for a row lock at the stock (PostgreSQL), else undefined. */
async function waitingAtStockLock(db: Db): Promise<true | undefined> {
  const [row] = await db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%locked AS MATERIALIZED%'",
  );
  return row!.n > 0 ? true : undefined;
}

forEachEngine('orders are placed in batches', 'parity', (env) => {
  it('wakes the payment workers after a commit that placed an order, and only then', async () => {
    const { database, customers } = env();
    await env().product([{ sku: 'BATCH-WAKE', stock: 10 }]);
    const [c1, c2, c3] = await customers(3);
    let wakes = 0;
    const placer = orderPlacer(database.db, {
      concurrency: 1,
      maxBatch: 64,
      onPlaced: () => {
        wakes++;
      },
    });
    await placer.place(request(c1!, 'wake-1', [{ sku: 'BATCH-WAKE', quantity: 1 }]));
    assert.equal(wakes, 1);
    // Refused, then a replay of the first: nothing new to charge.
    await placer.place(request(c1!, 'wake-2', [{ sku: 'NO-SUCH-SKU', quantity: 1 }]));
    await placer.place(request(c1!, 'wake-1', [{ sku: 'BATCH-WAKE', quantity: 1 }]));
    assert.equal(wakes, 1);
    // A placer with nothing running: the first runs alone (one wake-up); the next two share a batch
    // of a refusal and an order (one more).
    const fresh = orderPlacer(database.db, {
      concurrency: 1,
      maxBatch: 64,
      onPlaced: () => {
        wakes++;
      },
    });
    const three = await Promise.all([
      fresh.place(request(c2!, 'wake-3', [{ sku: 'BATCH-WAKE', quantity: 1 }])),
      fresh.place(request(c3!, 'wake-4', [{ sku: 'NO-SUCH-SKU', quantity: 1 }])),
      fresh.place(request(c3!, 'wake-5', [{ sku: 'BATCH-WAKE', quantity: 1 }])),
    ]);
    assert.deepEqual(
      three.map((a) => a.outcome.status),
      [201, 422, 201],
    );
    assert.equal(wakes, 3);
  });

  it('puts at most maxBatch orders in one transaction', async () => {
    const { database, customers } = env();
    await env().product([{ sku: 'BATCH-MAX', stock: 100 }]);
    const buyers = await customers(7);
    const { db, counts } = instrumented(database.db, 'never');
    const placer = orderPlacer(db, { concurrency: 1, maxBatch: 2 });
    // The first runs alone; the six that wait for it go two by two.
    const answers = await Promise.all(
      buyers.map((b, i) => placer.place(request(b, `max-${i}`, [{ sku: 'BATCH-MAX', quantity: 1 }]))),
    );
    assert.deepEqual(
      answers.map((a) => a.outcome.status),
      Array(7).fill(201),
    );
    assert.equal(counts.transactions, 4);
  });

  it('an order refused at the stock locks is told what the orders before it in its batch left', async () => {
    const { database, customers } = env();
    await env().product([{ sku: 'BATCH-LEFT', stock: 5 }]);
    const [c1, c2, c3] = await customers(3);
    const placer = orderPlacer(database.db, { concurrency: 1, maxBatch: 64 });
    // 4 left when the batch of the next two locks the stock: the first takes 3 and the second finds 1.
    const answers = await Promise.all([
      placer.place(request(c1!, 'left-1', [{ sku: 'BATCH-LEFT', quantity: 1 }])),
      placer.place(request(c2!, 'left-2', [{ sku: 'BATCH-LEFT', quantity: 3 }])),
      placer.place(request(c3!, 'left-3', [{ sku: 'BATCH-LEFT', quantity: 3 }])),
    ]);
    assert.deepEqual(
      answers.map((a) => a.outcome.status),
      [201, 201, 409],
    );
    const refused = answers[2]!.outcome.body as { code: string; detail: string; errors: unknown[] };
    assert.deepEqual(
      [refused.code, refused.detail, refused.errors],
      [
        'out_of_stock',
        'SKU BATCH-LEFT has 1 available, 3 requested',
        [{ path: '/lines/0/quantity', message: 'only 1 available' }],
      ],
    );
    await assertStockExplained(database.db);
  });

  it('a batch that waits for a stock row another transaction holds decides on what that one left, in one transaction', async (t) => {
    const e = env();
    if (e.engine !== 'postgres') return t.skip('concurrent transactions need PostgreSQL');
    await e.product([{ sku: 'BATCH-HELD', stock: 5 }]);
    const [c1] = await e.customers(1);
    const { db, counts } = instrumented(e.database.db, 'no-poison');
    const placer = orderPlacer(db, { concurrency: 1, maxBatch: 64 });
    // Another transaction locks the row and takes all 5 off hand (an adjustment, with its movement).
    const holder = await holdInTransaction(e.database.db, [
      "UPDATE stock_levels SET on_hand = 0 WHERE sku = 'BATCH-HELD'",
      "INSERT INTO stock_movements (sku, kind, on_hand_delta, reserved_delta, reason) VALUES ('BATCH-HELD', 'adjustment', -5, 0, 'test: taken while a batch waits')",
    ]);
    const answer = placer.place(request(c1!, 'held-1', [{ sku: 'BATCH-HELD', quantity: 1 }]));
    // The batch waits at the row lock; the holder commits only once the batch is seen waiting there.
    await waitFor('the batch to wait at the row lock', () => waitingAtStockLock(e.database.db));
    await holder.commit();
    const refused = (await answer).outcome;
    assert.deepEqual(
      [refused.status, (refused.body as { detail: string }).detail],
      [409, 'SKU BATCH-HELD has 0 available, 1 requested'],
    );
    assert.equal(counts.transactions, 1, 'decided in its own transaction, not by a fault and a retry');
  });

  it('an order for a sold-out SKU is refused at once, even while another transaction holds that row', async (t) => {
    const e = env();
    if (e.engine !== 'postgres') return t.skip('concurrent transactions need PostgreSQL');
    await e.product([
      { sku: 'BATCH-GONE', stock: 0 },
      { sku: 'BATCH-THERE', stock: 5 },
    ]);
    const [c1, c2] = await e.customers(2);
    const placer = orderPlacer(e.database.db, { concurrency: 1, maxBatch: 64 });
    const holder = await holdInTransaction(e.database.db, [
      "SELECT 1 FROM stock_levels WHERE sku = 'BATCH-GONE' FOR UPDATE",
    ]);
    try {
      // Hopeless orders do not queue behind a sold-out row's lock (a flash sale's hot SKU once it is gone).
      let answered = false;
      const answers = Promise.all([
        placer.place(request(c1!, 'gone-1', [{ sku: 'BATCH-GONE', quantity: 1 }])),
        placer.place(request(c2!, 'gone-2', [{ sku: 'BATCH-THERE', quantity: 1 }])),
      ]).finally(() => {
        answered = true;
      });
      // The watch for a wait stops once the answers are in (its rejection then loses the race).
      const waiting = waitFor('the batch to wait at the row lock', async () => {
        if (answered) throw new Error('answered without waiting');
        return waitingAtStockLock(e.database.db);
      }).then(() => 'waiting' as const);
      const first = await Promise.race([answers, waiting]);
      assert.notEqual(first, 'waiting', 'the batch waited for the sold-out row');
      assert.deepEqual(
        (await answers).map((a) => a.outcome.status),
        [409, 201],
      );
    } finally {
      await holder.commit();
    }
  });

  it('requests that wait while a batch runs go together in the next one, each with its own answer', async () => {
    const { database, customers } = env();
    await env().product([
      { sku: 'BATCH-A', stock: 3 },
      { sku: 'BATCH-B', stock: 100 },
    ]);
    const [c1, c2, c3, c4] = await customers(4);
    const { db, counts } = instrumented(database.db, 'never');
    const placer = orderPlacer(db, { concurrency: 1, maxBatch: 64 });
    // The first runs alone at once; the next four wait for it and then share one transaction.
    const answers = await Promise.all([
      placer.place(request(c1!, 'k1', [{ sku: 'BATCH-A', quantity: 1 }])),
      placer.place(
        request(c2!, 'k2', [
          { sku: 'BATCH-A', quantity: 2 },
          { sku: 'BATCH-B', quantity: 1 },
        ]),
      ),
      placer.place(request(c3!, 'k3', [{ sku: 'BATCH-A', quantity: 1 }])), // nothing left of A: refused alone
      placer.place(request(c4!, 'k4', [{ sku: 'NO-SUCH-SKU', quantity: 1 }])),
      placer.place(request(c4!, 'k5', [{ sku: 'BATCH-B', quantity: 5 }])),
    ]);
    assert.equal(counts.transactions, 2);
    assert.deepEqual(
      answers.map((a) => a.outcome.status),
      [201, 201, 409, 422, 201],
    );
    assert.equal((answers[2]!.outcome.body as { code: string }).code, 'out_of_stock');
    assert.equal((answers[3]!.outcome.body as { code: string }).code, 'unknown_sku');
    const [stock] = await database.db.query<{ a: number; b: number }>(
      "SELECT (SELECT reserved FROM stock_levels WHERE sku = 'BATCH-A') AS a, (SELECT reserved FROM stock_levels WHERE sku = 'BATCH-B') AS b",
    );
    assert.deepEqual(stock, { a: 3, b: 6 });
    // Every answer, refusals included, is stored under its key.
    const stored = await database.db.query<{ key: string; status_code: number }>(
      `SELECT k.key, i.status_code FROM unnest($1::text[]) WITH ORDINALITY AS k(key, n)
         JOIN idempotency_keys i ON i.key_hash = sha256(convert_to(k.key, 'UTF8')) ORDER BY k.n`,
      [['k1', 'k2', 'k3', 'k4', 'k5']],
    );
    assert.deepEqual(
      stored.map((s) => s.status_code),
      [201, 201, 409, 422, 201],
    );
    // One payment and one charge job per placed order.
    const [jobs] = await database.db.query<{ payments: number; jobs: number }>(
      `SELECT (SELECT count(*)::int FROM payments p JOIN orders o ON o.id = p.order_id WHERE o.customer_id = ANY($1::text[])) AS payments,
              (SELECT count(*)::int FROM pgboss.job j JOIN payments p ON p.id = j.data->>'paymentId' JOIN orders o ON o.id = p.order_id
                WHERE j.name = 'payments.charge' AND o.customer_id = ANY($1::text[])) AS jobs`,
      [[c1!.id, c2!.id, c3!.id, c4!.id]],
    );
    assert.deepEqual(jobs, { payments: 3, jobs: 3 });
    await assertStockExplained(database.db);
  });

  it('a second request with a key already in the batch waits for the next one and replays the first answer', async () => {
    const { database, customers } = env();
    await env().product([{ sku: 'BATCH-DUP', stock: 10 }]);
    const [c] = await customers(1);
    const { db, counts } = instrumented(database.db, 'never');
    const placer = orderPlacer(db, { concurrency: 1, maxBatch: 64 });
    const first = placer.place(request(c!, 'warm-up', [{ sku: 'BATCH-DUP', quantity: 1 }]));
    const twice = [
      placer.place(request(c!, 'dup', [{ sku: 'BATCH-DUP', quantity: 1 }])),
      placer.place(request(c!, 'dup', [{ sku: 'BATCH-DUP', quantity: 1 }])),
    ];
    const [a, b] = await Promise.all(twice);
    await first;
    assert.equal(counts.transactions, 3);
    assert.equal(a!.outcome.status, 201);
    assert.equal(a!.replayed, false);
    assert.deepEqual(b, { outcome: a!.outcome, replayed: true } satisfies Answer);
    const [n] = await database.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM order_lines WHERE sku = 'BATCH-DUP'",
    );
    assert.equal(n!.n, 2);
  });

  it('a fault in one request of a batch fails that request only: the others are placed on their own', async () => {
    const { database, customers } = env();
    await env().product([{ sku: 'BATCH-F', stock: 10 }]);
    const [c1, c2, c3] = await customers(3);
    const { db, counts } = instrumented(database.db, 'tok_poison');
    const placer = orderPlacer(db, { concurrency: 1, maxBatch: 64 });
    const results = await settled([
      placer.place(request(c1!, 'f0', [{ sku: 'BATCH-F', quantity: 1 }])),
      placer.place(request(c1!, 'f1', [{ sku: 'BATCH-F', quantity: 1 }])),
      placer.place(request(c2!, 'f2', [{ sku: 'BATCH-F', quantity: 1 }], 'tok_poison')),
      placer.place(request(c3!, 'f3', [{ sku: 'BATCH-F', quantity: 1 }])),
    ]);
    // f0 alone; f1-f3 together, which fails; then f1, f2, f3 one by one.
    assert.equal(counts.transactions, 1 + 1 + 3);
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'fulfilled', 'rejected', 'fulfilled'],
    );
    assert.deepEqual(
      results
        .filter((r) => r.status === 'fulfilled')
        .map((r) => (r as PromiseFulfilledResult<Answer>).value.outcome.status),
      [201, 201, 201],
    );
    // Nothing of the failed request was kept, not even its key: a retry runs it again.
    const [left] = await database.db.query<{ orders: number; keys: number; reserved: number }>(
      `SELECT (SELECT count(*)::int FROM order_lines WHERE sku = 'BATCH-F') AS orders,
              (SELECT count(*)::int FROM idempotency_keys WHERE key_hash = sha256('f2')) AS keys,
              (SELECT reserved FROM stock_levels WHERE sku = 'BATCH-F') AS reserved`,
    );
    assert.deepEqual(left, { orders: 3, keys: 0, reserved: 3 });
    await assertStockExplained(database.db);
  });
});
