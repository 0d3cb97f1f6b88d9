import { it } from 'node:test';
import assert from 'node:assert/strict';
import { freshDatabase, postgresUrl } from './support/database.js';

it('a connection ended by the server between two statements of a transaction fails that transaction, not the process', { skip: postgresUrl ? false : 'needs TEST_DATABASE_URL' }, async () => {
  const database = await freshDatabase('postgres', 2);
  const errors: Error[] = [];
  process.on('uncaughtException', (err) => errors.push(err));
  try {
    await assert.rejects(database.db.transaction(async (tx) => {
      const [me] = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      // Another session ends this one (as a server restart or an administrator would) while the
      // transaction sits idle between statements.
      await database.db.query('SELECT pg_terminate_backend($1)', [me!.pid]);
      await new Promise((resolve) => setTimeout(resolve, 200));
      await tx.query('SELECT 1');
    }));
    assert.deepEqual(errors, [], 'nothing escaped as an uncaught error');
    // The pool replaced the broken connection: the next transaction works.
    assert.deepEqual(await database.db.transaction((tx) => tx.query<{ ok: number }>('SELECT 1 AS ok')), [{ ok: 1 }]);
  } finally {
    await database.drop();
  }
});

it('a lost database connection answers 503 unavailable with Retry-After, not a bare 500', async () => {
  const { toProblem } = await import('../src/platform/http.js');
  const log = { warn: () => {}, error: () => {} } as never;
  for (const err of [Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }), new Error('Connection terminated unexpectedly'), Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })]) {
    const { body, headers } = toProblem(err, log);
    assert.equal(body.status, 503);
    assert.equal(body.code, 'unavailable');
    assert.equal(headers['retry-after'], '1');
    assert.doesNotMatch(JSON.stringify(body), /terminat|ECONN/);
  }
  assert.equal(toProblem(new Error('something else'), log).body.status, 500);
});
