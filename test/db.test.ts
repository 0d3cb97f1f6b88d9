import { it } from 'node:test';
import assert from 'node:assert/strict';
import { engines, freshDatabase, postgresUrl } from './support/database.ts';
import pg from 'pg';
import { waitFor } from './support/wait.ts';

it(
  'a connection ended by the server between two statements of a transaction fails that transaction, not the process',
  { skip: postgresUrl ? false : 'needs TEST_DATABASE_URL' },
  async () => {
    const database = await freshDatabase('postgres', 2);
    const errors: Error[] = [];
    process.on('uncaughtException', (err) => errors.push(err));
    try {
      await assert.rejects(
        database.db.transaction(async (tx) => {
          const [me] = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
          // Another session ends this one (as a server restart or an administrator would) while the
          // transaction sits idle between statements.
          await database.db.query('SELECT pg_terminate_backend($1)', [me!.pid]);
          await new Promise((resolve) => setTimeout(resolve, 200));
          await tx.query('SELECT 1');
        }),
      );
      assert.deepEqual(errors, [], 'nothing escaped as an uncaught error');
      // The pool replaced the broken connection: the next transaction works.
      assert.deepEqual(await database.db.transaction((tx) => tx.query<{ ok: number }>('SELECT 1 AS ok')), [{ ok: 1 }]);
    } finally {
      await database.drop();
    }
  },
);

it('a lost database connection answers 503 unavailable with Retry-After, not a bare 500', async () => {
  const { toProblem } = await import('../src/platform/http.ts');
  const log = { warn: () => {}, error: () => {} } as never;
  for (const err of [
    Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }),
    new Error('Connection terminated unexpectedly'),
    new Error('Client has encountered a connection error and is not queryable'),
    Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
  ]) {
    const { body, headers } = toProblem(err, log);
    assert.equal(body.status, 503);
    assert.equal(body.code, 'unavailable');
    assert.equal(headers['retry-after'], '1');
    assert.doesNotMatch(JSON.stringify(body), /terminat|ECONN/);
  }
  assert.equal(toProblem(new Error('something else'), log).body.status, 500);
});

it(
  "a burst larger than the pool: a request that waits past the pool's connect timeout answers 503 unavailable with Retry-After, not a 500",
  { skip: postgresUrl ? false : 'needs TEST_DATABASE_URL' },
  async () => {
    const { toProblem } = await import('../src/platform/http.ts');
    const log = { warn: () => {}, error: () => {} } as never;
    // pg-pool's own error, not a copy of its text: one connection, held, and a second caller.
    // The held connection gets a generous timeout (on a busy machine opening it can take longer
    // than 50 ms); pg-pool reads connectionTimeoutMillis at each connect, so only the second
    // caller waits the short one.
    const pool = new pg.Pool({ connectionString: postgresUrl, max: 1, connectionTimeoutMillis: 30_000 });
    const held = await pool.connect();
    pool.options.connectionTimeoutMillis = 50;
    try {
      const err = await pool.connect().then(
        (c) => {
          c.release();
          return undefined;
        },
        (e: unknown) => e as Error,
      );
      assert.ok(err, 'the second caller got no connection');
      const { body, headers } = toProblem(err, log);
      assert.equal(body.status, 503);
      assert.equal(body.code, 'unavailable');
      assert.equal(headers['retry-after'], '1');
      assert.doesNotMatch(JSON.stringify(body), /timeout exceeded/);
    } finally {
      held.release();
      await pool.end();
    }
  },
);

it("a number a column cannot hold (22003) answers 422 limit_exceeded, not a 500 with the database's words", async () => {
  const { toProblem } = await import('../src/platform/http.ts');
  const log = { warn: () => {}, error: () => {} } as never;
  const { body } = toProblem(Object.assign(new Error('integer out of range'), { code: '22003' }), log);
  assert.equal(body.status, 422);
  assert.equal(body.code, 'limit_exceeded');
  assert.doesNotMatch(JSON.stringify(body), /integer out of range/);
});

for (const engine of engines('parity')) {
  it(`[${engine}] int8 arrives as an exact number; one beyond 2^53 is refused, never rounded`, async () => {
    const database = await freshDatabase(engine, 2);
    try {
      const { db } = database;
      assert.deepEqual(
        await db.query(
          'SELECT 9007199254740991::int8 AS max, (-9007199254740991)::int8 AS min, count(*) AS n FROM (VALUES (1), (2)) v',
        ),
        [{ max: 9007199254740991, min: -9007199254740991, n: 2 }],
      );
      // pg's default would round 2^53 + 1 to 2^53; PGlite's would answer a BigInt.
      await assert.rejects(
        db.query('SELECT 9007199254740993::int8 AS n'),
        /beyond what a JavaScript number holds exactly/,
      );
      await assert.rejects(
        db.transaction((tx) => tx.query('SELECT $1::int8 AS n', ['9007199254740992'])),
        /beyond what a JavaScript number holds exactly/,
      );
      assert.deepEqual(await db.query('SELECT 1::int8 AS n'), [{ n: 1 }], 'the connection is usable after the refusal');
    } finally {
      await database.drop();
    }
  });

  it(`[${engine}] afterCommit runs once the transaction is durable, and never after a rollback`, async () => {
    const database = await freshDatabase(engine, 2);
    try {
      const db = database.db;
      await db.exec('CREATE TABLE after_commit_probe (n int)');
      const seen: number[] = [];
      const visibleThen = new Promise<number>((resolve) => {
        void db.transaction(async (tx) => {
          await tx.query('INSERT INTO after_commit_probe (n) VALUES ($1)', [1]);
          tx.afterCommit(async (after) => {
            // Runs on the database, outside the transaction: the row must already be visible.
            const [row] = await after.query<{ n: number }>(
              'SELECT count(*)::int AS n FROM after_commit_probe WHERE n = $1',
              [1],
            );
            resolve(row!.n);
          });
          seen.push(1);
        });
      });
      assert.equal(await visibleThen, 1);
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.query('INSERT INTO after_commit_probe (n) VALUES ($1)', [2]);
          tx.afterCommit(() => {
            seen.push(2);
          });
          throw new Error('roll back');
        }),
        /roll back/,
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(seen, [1], 'the callback of the rolled-back transaction did not run');
    } finally {
      await database.drop();
    }
  });
}

it(
  'parameterised statements run as prepared statements, one per text and connection',
  { skip: postgresUrl ? false : 'needs TEST_DATABASE_URL' },
  async () => {
    const database = await freshDatabase('postgres', 1);
    try {
      const text = 'SELECT $1::int + 1 AS n';
      for (const x of [1, 2, 3]) assert.deepEqual(await database.db.query(text, [x]), [{ n: x + 1 }]);
      const prepared = await database.db.query<{ name: string }>(
        'SELECT name FROM pg_prepared_statements WHERE statement = $1',
        [text],
      );
      assert.equal(prepared.length, 1, 'the one pooled connection prepared the text once');
      assert.match(prepared[0]!.name, /^er_/);
      // Without parameters (scripts, DDL) nothing is prepared.
      await database.db.query('SELECT 41 AS n');
      const unnamed = await database.db.query('SELECT name FROM pg_prepared_statements WHERE statement = $1', [
        'SELECT 41 AS n',
      ]);
      assert.deepEqual(unnamed, []);
    } finally {
      await database.drop();
    }
  },
);

it('a NUL character that reaches the database (no schema excluded it) answers 400, not 500', async () => {
  const { toProblem } = await import('../src/platform/http.ts');
  const log = {
    warn: () => {},
    error: () => {
      throw new Error('logged as a fault');
    },
  } as never;
  // The errors PostgreSQL raises for a NUL in text and for \u0000 in jsonb.
  for (const code of ['22021', '22P05']) {
    const { body } = toProblem(
      Object.assign(new Error('invalid byte sequence for encoding "UTF8": 0x00'), { code }),
      log,
    );
    assert.equal(body.status, 400);
    assert.equal(body.code, 'validation_failed');
  }
  const database = await freshDatabase(engines('parity')[engines('parity').length - 1]!, 1);
  try {
    // The real error, from whichever engine this run has: its code is one of the two above.
    const err = await database.db.query('SELECT $1::text AS t', ['a\u0000b']).then(
      () => null,
      (e: { code?: string }) => e,
    );
    assert.ok(err && ['22021', '22P05'].includes(err.code ?? ''), `got ${JSON.stringify(err)}`);
  } finally {
    await database.drop();
  }
});

it(
  'tables that grew are analyzed (new ones at once, then each time they double), others are left alone',
  { skip: postgresUrl ? false : 'needs TEST_DATABASE_URL' },
  async () => {
    const { analyzeChangedTables } = await import('../src/platform/upkeep.ts');
    const database = await freshDatabase('postgres', 2);
    try {
      const db = database.db;
      await db.exec('CREATE TABLE upkeep_probe (n int)');
      await db.query('INSERT INTO upkeep_probe SELECT generate_series(1, $1::int)', [1500]);
      const changes = async () =>
        Number(
          (
            await db.query<{ n: number }>(
              "SELECT n_mod_since_analyze::int AS n FROM pg_stat_user_tables WHERE relname = 'upkeep_probe'",
            )
          )[0]?.n ?? 0,
        );
      // The statistics arrive a moment after the statements.
      await waitFor(
        'the inserts to show in the statistics',
        async () => ((await changes()) >= 1500 ? true : undefined),
        120_000,
      );
      assert.deepEqual(await analyzeChangedTables(db, ['public']), ['upkeep_probe']);
      const [stats] = await db.query<{ reltuples: number }>(
        "SELECT reltuples::int AS reltuples FROM pg_class WHERE relname = 'upkeep_probe'",
      );
      assert.equal(stats!.reltuples, 1500);
      // 1,000 more rows: changed by less than its size, so not yet.
      await db.query('INSERT INTO upkeep_probe SELECT generate_series(1, $1::int)', [1000]);
      await waitFor(
        'the inserts to show in the statistics',
        async () => ((await changes()) >= 1000 ? true : undefined),
        120_000,
      );
      assert.deepEqual(await analyzeChangedTables(db, ['public']), []);
    } finally {
      await database.drop();
    }
  },
);
