import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine } from './support/app.ts';
import { endpoints } from '../src/client.ts';
import {
  canonicalJson,
  purgeIdempotencyKeys,
  readOutcomes,
  requestHash,
  runIdempotent,
} from '../src/platform/idempotency.ts';
import { AppError } from '../src/errors.ts';

const card = { method: 'card' as const, token: 'tok_ok' };

/** The second answer is the first one's replay: both 201, one order. */
function assertReplayOf(
  second: { statusCode: number; headers: Record<string, unknown>; json(): { id: string } },
  first: typeof second,
): void {
  assert.equal(first.statusCode, 201);
  assert.equal(second.statusCode, 201);
  assert.equal(first.headers['idempotent-replayed'], undefined);
  assert.equal(second.headers['idempotent-replayed'], 'true');
  assert.equal(second.json().id, first.json().id);
}

// The request hash is taken of this text: two bodies are the same request exactly when their texts
// are equal, so the text must be JSON itself (nothing two different bodies could share).
describe('the canonical JSON of a request body', () => {
  it('is JSON with the keys of every object sorted, arrays in their order', () => {
    const body = {
      payment: { token: 'tok_ok', method: 'card' },
      lines: [
        { sku: 'B', quantity: 2 },
        { quantity: 1, sku: 'A' },
      ],
      note: null,
      flag: true,
      empty: {},
      none: [],
    };
    assert.equal(
      canonicalJson(body),
      '{"empty":{},"flag":true,"lines":[{"quantity":2,"sku":"B"},{"quantity":1,"sku":"A"}],"none":[],"note":null,"payment":{"method":"card","token":"tok_ok"}}',
    );
    assert.equal(canonicalJson([[1, 2], [], [[3]], 'a"b']), '[[1,2],[],[[3]],"a\\"b"]');
    assert.equal(canonicalJson(null), 'null');
    assert.equal(canonicalJson(undefined), 'null');
    assert.equal(canonicalJson(7), '7');
  });

  it('tells apart bodies that differ only in a key, or in where a value sits', () => {
    const texts = [
      { a: 1 },
      { b: 1 },
      { a: [1, 2] },
      { a: [[1], 2] },
      { a: [1, [2]] },
      { a: '1' },
      [{}],
      [[]],
      {},
      [],
    ].map(canonicalJson);
    assert.equal(new Set(texts).size, texts.length, texts.join(' '));
    for (const t of texts) assert.doesNotThrow(() => JSON.parse(t), t);
  });

  it('writes a body nested 100,000 deep without overflowing the stack', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = i % 2 ? [deep] : { k: deep };
    const text = canonicalJson(deep);
    assert.equal(text.length, 50_000 * ('{"k":'.length + '}'.length) + 50_000 * 2 + 1);
  });
});

forEachEngine('Idempotency-Key', 'parity', (env) => {
  it('replays a finished request: same status, same body, Idempotent-Replayed, and no second order', async () => {
    const { client, customer, database } = env();
    await env().product([{ sku: 'IDEM', stock: 5 }]);
    const c = await customer();
    const body = { lines: [{ sku: 'IDEM', quantity: 1 }], payment: card };
    const first = await client.call(endpoints.placeOrder, { token: c.token, idempotencyKey: 'k-1', body });
    const second = await client.call(endpoints.placeOrder, { token: c.token, idempotencyKey: 'k-1', body });
    assert.equal(first.status, 201);
    assert.equal(second.status, 201);
    assert.deepEqual(second.body, first.body);
    assert.equal(first.headers['idempotent-replayed'], undefined);
    assert.equal(second.headers['idempotent-replayed'], 'true');
    const [{ n }] = (await database.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM orders WHERE customer_id = $1',
      [c.id],
    )) as [{ n: number }];
    assert.equal(n, 1);
  });

  it('treats the same JSON with its keys in another order as the same request', async () => {
    const { app, customer } = env();
    const c = await customer();
    const headers = {
      authorization: `Bearer ${c.token}`,
      'idempotency-key': 'k-order',
      'content-type': 'application/json',
    };
    const a = await app.inject({
      method: 'POST',
      url: '/v1/orders',
      headers,
      payload: '{"lines":[{"sku":"IDEM","quantity":1}],"payment":{"method":"card","token":"tok_ok"}}',
    });
    const b = await app.inject({
      method: 'POST',
      url: '/v1/orders',
      headers,
      payload: '{"payment":{"token":"tok_ok","method":"card"},"lines":[{"quantity":1,"sku":"IDEM"}]}',
    });
    assertReplayOf(b, a);
  });

  it('replays a business failure too: a 409 out_of_stock comes back as it was, even once stock arrives', async () => {
    const { client, adminToken, customer } = env();
    const c = await customer();
    const body = { lines: [{ sku: 'IDEM', quantity: 50 }], payment: card };
    const first = await client.call(endpoints.placeOrder, { token: c.token, idempotencyKey: 'k-fail', body });
    assert.equal(first.status, 409);
    assert.equal(first.headers['idempotent-replayed'], undefined, 'the first answer is no replay');
    await client.ok(endpoints.adjustStock, {
      token: adminToken,
      idempotencyKey: 'restock',
      params: { sku: 'IDEM' },
      body: { delta: 100, reason: 'restock' },
    });
    const again = await client.call(endpoints.placeOrder, { token: c.token, idempotencyKey: 'k-fail', body });
    assert.equal(again.status, 409);
    assert.deepEqual(again.body, first.body);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.match(String(again.headers['content-type']), /application\/problem\+json/);
  });

  it('answers a business failure of status 400 as problem+json, the first time and when replayed', async () => {
    const { app, adminToken } = env();
    const headers = { authorization: `Bearer ${adminToken}`, 'idempotency-key': 'k-hook-400' };
    const payload = { url: 'http://127.0.0.1:9/hook', events: ['order.paid'] };
    const first = await app.inject({ method: 'POST', url: '/v1/webhook-endpoints', headers, payload });
    const again = await app.inject({ method: 'POST', url: '/v1/webhook-endpoints', headers, payload });
    for (const res of [first, again]) {
      assert.equal(res.statusCode, 400);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
      assert.equal(res.json().code, 'validation_failed');
    }
    assert.equal(first.headers['idempotent-replayed'], undefined);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.deepEqual(again.json(), first.json());
  });

  it('identifies a request by its path without the query string', async () => {
    const { app, customer } = env();
    const c = await customer();
    const headers = { authorization: `Bearer ${c.token}`, 'idempotency-key': 'k-query' };
    const payload = { lines: [{ sku: 'IDEM', quantity: 1 }], payment: card };
    const a = await app.inject({ method: 'POST', url: '/v1/orders?via=app', headers, payload });
    const b = await app.inject({ method: 'POST', url: '/v1/orders?via=retry', headers, payload });
    assertReplayOf(b, a);
  });

  it('answers 409 idempotency_key_in_use while the first request with the key has no answer stored', async () => {
    const { app, customer, database } = env();
    const c = await customer();
    const payload = { lines: [{ sku: 'IDEM', quantity: 1 }], payment: card };
    // A claimed key without its answer, as the first request's row looks to a second one.
    await database.db.query('INSERT INTO idempotency_keys (principal_id, key_hash, request_hash) VALUES ($1, $2, $3)', [
      c.id,
      createHash('sha256').update('k-running').digest(),
      requestHash('POST', '/v1/orders', payload),
    ]);
    const res = await app.inject({
      method: 'POST',
      url: '/v1/orders',
      headers: { authorization: `Bearer ${c.token}`, 'idempotency-key': 'k-running' },
      payload,
    });
    assert.equal(res.statusCode, 409, res.body + env().logs.slice(-5).join('\n'));
    assert.equal(res.json().code, 'idempotency_key_in_use');
    assert.equal((await database.db.query('SELECT 1 FROM orders WHERE customer_id = $1', [c.id])).length, 0);
  });

  it('sends every answer once: a signup, a secret shown once, an order and a replay leave no "already sent" in the log', async () => {
    const { app, adminToken, customer, logs } = env();
    const from = logs.length;
    const c = await customer();
    const hook = { authorization: `Bearer ${adminToken}`, 'idempotency-key': 'k-hook-once' };
    const payload = { url: 'https://shop.example/hooks/once', events: ['order.paid'] };
    for (let i = 0; i < 2; i++)
      assert.equal(
        (await app.inject({ method: 'POST', url: '/v1/webhook-endpoints', headers: hook, payload })).statusCode,
        201,
      );
    const order = { lines: [{ sku: 'IDEM', quantity: 1 }], payment: card };
    for (let i = 0; i < 2; i++) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/orders',
        headers: { authorization: `Bearer ${c.token}`, 'idempotency-key': 'k-once' },
        payload: order,
      });
      assert.equal(res.statusCode, 201);
    }
    assert.deepEqual(
      logs.slice(from).filter((line) => /already sent|ERR_HTTP_HEADERS_SENT/.test(line)),
      [],
    );
  });

  it('runs keyed work once: a fault stores nothing and the retry runs, an answer replays, a failure is stored, another request is refused', async () => {
    const { database } = env();
    const keyed = (key: string, body: unknown = {}) => ({
      principalId: 'usr_idem_unit',
      key,
      hash: requestHash('POST', '/unit', body),
    });
    const created = { status: 201, body: { id: 'one' } };
    // Without a key: the work's answer, never a replay.
    assert.deepEqual(await runIdempotent(database.db, undefined, async () => created), {
      outcome: created,
      replayed: false,
    });
    // A fault rolls back with the work; the key stays free and the retry runs.
    await assert.rejects(
      runIdempotent(database.db, keyed('k-unit'), async () => {
        throw new Error('the processor is down');
      }),
      /processor is down/,
    );
    assert.deepEqual(await runIdempotent(database.db, keyed('k-unit'), async () => created), {
      outcome: created,
      replayed: false,
    });
    assert.deepEqual(
      await runIdempotent(database.db, keyed('k-unit'), async () => {
        throw new Error('must not run again');
      }),
      { outcome: created, replayed: true },
    );
    await assert.rejects(
      runIdempotent(database.db, keyed('k-unit', { other: true }), async () => created),
      (err: unknown) => err instanceof AppError && err.code === 'idempotency_key_reused',
    );
    // A business failure is an answer: stored, and replayed.
    const failed = await runIdempotent(database.db, keyed('k-unit-fail'), async () => {
      throw new AppError('out_of_stock', 'none left');
    });
    assert.deepEqual(
      [failed.replayed, failed.outcome.status, (failed.outcome.body as { code: string }).code],
      [false, 409, 'out_of_stock'],
    );
    assert.deepEqual(await runIdempotent(database.db, keyed('k-unit-fail'), async () => created), {
      outcome: failed.outcome,
      replayed: true,
    });
    // What the chaos run reads: each key's stored answer, in the order asked, undefined for none.
    assert.deepEqual(
      await readOutcomes(database.db, [keyed('k-unit-missing'), keyed('k-unit-fail'), keyed('k-unit')]),
      [undefined, failed.outcome, created],
    );
  });

  it('answers 422 idempotency_key_reused for the same key with a different request', async () => {
    const { client, customer } = env();
    const c = await customer();
    await client.ok(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: 'k-2',
      body: { lines: [{ sku: 'IDEM', quantity: 1 }], payment: card },
    });
    const other = await client.call(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: 'k-2',
      body: { lines: [{ sku: 'IDEM', quantity: 2 }], payment: card },
    });
    assert.equal(other.status, 422);
    assert.equal(other.body.code, 'idempotency_key_reused');
    assert.equal(other.headers['idempotent-replayed'], undefined, 'a refusal of the key is no replay of its answer');
  });

  it('scopes keys per principal: two customers may use the same key', async () => {
    const { client, customer } = env();
    const a = await customer();
    const b = await customer();
    const body = { lines: [{ sku: 'IDEM', quantity: 1 }], payment: card };
    const oa = await client.ok(endpoints.placeOrder, { token: a.token, idempotencyKey: 'shared', body });
    const ob = await client.call(endpoints.placeOrder, { token: b.token, idempotencyKey: 'shared', body });
    assert.equal(ob.status, 201);
    assert.notEqual(ob.ok && ob.body.id, oa.id);
    assert.equal(ob.headers['idempotent-replayed'], undefined);
  });

  it('stores nothing for a request rejected before it ran (validation, authentication)', async () => {
    const { client, customer, database } = env();
    const c = await customer();
    const invalid = await client.call(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: 'k-early',
      body: { lines: [], payment: card },
    });
    assert.equal(invalid.status, 400);
    const anon = await client.call(endpoints.placeOrder, {
      idempotencyKey: 'k-early',
      body: { lines: [{ sku: 'IDEM', quantity: 1 }], payment: card },
    });
    assert.equal(anon.status, 401);
    const stored = await database.db.query("SELECT 1 FROM idempotency_keys WHERE key_hash = sha256('k-early')");
    assert.equal(stored.length, 0);
    // The key is still free for a valid request.
    assert.equal(
      (
        await client.call(endpoints.placeOrder, {
          token: c.token,
          idempotencyKey: 'k-early',
          body: { lines: [{ sku: 'IDEM', quantity: 1 }], payment: card },
        })
      ).status,
      201,
    );
  });

  it('refuses a malformed key and requires one where the contract does', async () => {
    const { app, customer } = env();
    const c = await customer();
    const headers = { authorization: `Bearer ${c.token}` };
    const payload = { lines: [{ sku: 'IDEM', quantity: 1 }], payment: card };
    const none = await app.inject({ method: 'POST', url: '/v1/orders', headers, payload });
    assert.equal(none.statusCode, 400);
    assert.equal(none.json().code, 'idempotency_key_required');
    const long = await app.inject({
      method: 'POST',
      url: '/v1/orders',
      headers: { ...headers, 'idempotency-key': 'x'.repeat(256) },
      payload,
    });
    assert.equal(long.statusCode, 400);
    assert.equal(long.json().code, 'validation_failed');
    assert.deepEqual(long.json().errors, [
      { path: '/headers/idempotency-key', message: 'must be 1 to 255 printable ASCII characters' },
    ]);
  });

  it('gives one order for 20 concurrent requests with one key, all answering the same order', async () => {
    const { client, customer, database } = env();
    const c = await customer();
    const body = { lines: [{ sku: 'IDEM', quantity: 1 }], payment: card };
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        client.call(endpoints.placeOrder, { token: c.token, idempotencyKey: 'k-race', body }),
      ),
    );
    const ids = new Set(results.map((r) => (r.status === 201 ? (r.body as { id: string }).id : `status ${r.status}`)));
    assert.equal(ids.size, 1, `all answers name one order: ${[...ids].join(', ')}`);
    assert.equal(results.filter((r) => r.headers['idempotent-replayed'] === 'true').length, 19);
    const [row] = await database.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM orders WHERE customer_id = $1',
      [c.id],
    );
    assert.equal(row!.n, 1);
  });

  it('purges keys older than the retention, never younger than 24 hours', async () => {
    const { database } = env();
    await database.db.query(
      "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key_hash = sha256('k-1')",
    );
    await database.db.query(
      "UPDATE idempotency_keys SET created_at = now() - interval '23 hours' WHERE key_hash = sha256('k-2')",
    );
    assert.equal(await purgeIdempotencyKeys(database.db, 1), 1, 'a retention under 24 hours is raised to 24');
    const left = await database.db.query<{ key: string }>(
      "SELECT CASE key_hash WHEN sha256('k-1') THEN 'k-1' ELSE 'k-2' END AS key FROM idempotency_keys WHERE key_hash IN (sha256('k-1'), sha256('k-2'))",
    );
    assert.deepEqual(
      left.map((r) => r.key),
      ['k-2'],
    );
  });
});

forEachEngine('Idempotency-Key answers stored before they were sealed', 'parity', (env) => {
  it('still replays an answer kept in plain text by an earlier release (until it is purged)', async () => {
    const { client, adminToken, database } = env();
    const admin = await client.ok(endpoints.me, { token: adminToken });
    const body = { name: 'legacy', role: 'customer' as const };
    const answer = {
      id: 'key_legacy',
      name: 'legacy',
      role: 'customer',
      key: 'erk_legacy',
      createdAt: new Date().toISOString(),
    };
    await database.db.query(
      `INSERT INTO idempotency_keys (principal_id, key_hash, request_hash, status_code, response_body)
       VALUES ($1, sha256('legacy-key'), $2, 201, $3)`,
      [admin.id, requestHash('POST', '/v1/api-keys', body), JSON.stringify(answer)],
    );
    const res = await client.call(endpoints.createApiKey, { token: adminToken, idempotencyKey: 'legacy-key', body });
    assert.equal(res.status, 201);
    assert.deepEqual(res.body, answer);
    assert.equal(res.headers['idempotent-replayed'], 'true');
  });
});
