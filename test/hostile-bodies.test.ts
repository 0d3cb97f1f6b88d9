// Bodies built to hurt: nested deeper than any stack, as large as the limit allows, sent to routes
// with and without a body schema. Each is a 4xx problem+json, never a 500.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine } from './support/app.ts';
import { endpoints } from '../src/client.ts';

const nested = (depth: number, open = '[', close = ']') => open.repeat(depth) + close.repeat(depth);
// Objects all the way down: {"a":{"a":...{}...}}
const nestedObjects = (depth: number) => '{"a":'.repeat(depth) + '{}' + '}'.repeat(depth);

forEachEngine('hostile request bodies', 'one', (env) => {
  let order: { id: string; token: string };
  let hookId: string;

  it('set-up: an order and a webhook endpoint to aim at', async () => {
    const { client, customer, product, adminToken } = env();
    await product([{ sku: 'DEEP', stock: 5 }]);
    const c = await customer();
    const placed = await client.ok(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: 'deep-order',
      body: { lines: [{ sku: 'DEEP', quantity: 1 }], payment: { method: 'card', token: 'tok_ok' } },
    });
    order = { id: placed.id, token: c.token };
    hookId = (
      await client.ok(endpoints.createWebhookEndpoint, {
        token: adminToken,
        body: { url: 'https://hooks.example/deep', events: ['order.created'] },
      })
    ).id;
  });

  it('answers a 100,000-deep body to the routes that take no body (cancel, fulfil, redeliver) with 400, and does nothing', async () => {
    const { app, adminToken } = env();
    const targets = [
      { url: `/v1/orders/${order.id}/cancel`, token: order.token },
      { url: `/v1/orders/${order.id}/fulfil`, token: adminToken },
      { url: `/v1/webhook-endpoints/${hookId}/deliveries/evt_x/redeliver`, token: adminToken },
    ];
    for (const { url, token } of targets) {
      for (const payload of [nested(100_000), nestedObjects(100_000)]) {
        const res = await app.inject({
          method: 'POST',
          url,
          payload,
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/json',
            'idempotency-key': `deep-${url.length}`,
          },
        });
        assert.equal(res.statusCode, 400, `${url}: ${res.body.slice(0, 200)}`);
        assert.match(String(res.headers['content-type']), /application\/problem\+json/);
        assert.equal(res.json().code, 'validation_failed');
      }
    }
    const after = await env().client.ok(endpoints.getOrder, { token: order.token, params: { id: order.id } });
    assert.equal(after.status, 'pending_payment', 'the order was neither cancelled nor fulfilled');
  });

  it('still accepts no body, or an empty object, on those routes', async () => {
    const { app } = env();
    const headers = { authorization: `Bearer ${order.token}`, 'idempotency-key': 'cancel-empty' };
    const empty = await app.inject({
      method: 'POST',
      url: `/v1/orders/${order.id}/cancel`,
      headers: { ...headers, 'content-type': 'application/json' },
      payload: '{}',
    });
    assert.equal(empty.statusCode, 200, empty.body);
    // The same request for its key: no body and {} are the same.
    const none = await app.inject({ method: 'POST', url: `/v1/orders/${order.id}/cancel`, headers });
    assert.equal(none.statusCode, 200, none.body);
    assert.equal(none.headers['idempotent-replayed'], 'true');
  });

  it('answers a 1 MiB body of nested arrays or objects with 400 on routes with a body schema', async () => {
    const { app, adminToken } = env();
    const depth = 512 * 1024 - 8;
    const bodies = [nested(depth), `{"name":${nested(depth - 8)}}`, nestedObjects(depth / 8)];
    for (const payload of bodies) {
      assert.ok(payload.length <= 1024 * 1024);
      for (const [url, token] of [
        ['/v1/auth/signup', undefined],
        ['/v1/orders', order.token],
        ['/v1/api-keys', adminToken],
      ] as const) {
        const res = await app.inject({
          method: 'POST',
          url,
          payload,
          headers: {
            'content-type': 'application/json',
            'idempotency-key': 'deep',
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          },
        });
        assert.equal(res.statusCode, 400, `${url}: ${res.body.slice(0, 200)}`);
        assert.match(String(res.headers['content-type']), /application\/problem\+json/);
      }
    }
  });

  // Last: a route that wrongly took one of these bodies might end the caller's sessions.
  it('every route that takes a body, walked as a customer and as an admin, answers deep, huge and parallel bodies with a 4xx problem+json', async () => {
    const { app, adminToken, customer } = env();
    const c = await customer();
    const writes = app.declaredRoutes().flatMap((r) =>
      r.method
        .split(',')
        .filter((m) => ['POST', 'PUT', 'PATCH'].includes(m))
        .map((method) => ({
          method: method as 'POST' | 'PUT' | 'PATCH',
          url: r.url.replace(/:[A-Za-z0-9_]+/g, 'xyz_dummy01').replace(/\*/g, 'dummy'),
        })),
    );
    assert.ok(writes.length >= 25, `only ${writes.length} write routes seen`);
    const bodies = [nested(100_000), nestedObjects(100_000), `{"a":"${'x'.repeat(1024 * 1024)}"}`];
    const attempts = writes.flatMap((route) =>
      [c.token, adminToken].flatMap((token) =>
        bodies.map((payload, i) => ({ route, token, payload, key: `hostile-${i}` })),
      ),
    );
    const wrong: string[] = [];
    // All at once, 200 at a time: the answers must not depend on what else runs.
    for (let i = 0; i < attempts.length; i += 200) {
      await Promise.all(
        attempts.slice(i, i + 200).map(async ({ route, token, payload, key }) => {
          const res = await app.inject({
            method: route.method,
            url: route.url,
            payload,
            headers: { 'content-type': 'application/json', 'idempotency-key': key, authorization: `Bearer ${token}` },
          });
          if (
            res.statusCode < 400 ||
            res.statusCode >= 500 ||
            !/application\/problem\+json/.test(String(res.headers['content-type']))
          ) {
            wrong.push(
              `${route.method} ${route.url} (${payload.length} bytes): ${res.statusCode} ${res.body.slice(0, 120)}`,
            );
          }
        }),
      );
    }
    assert.deepEqual(wrong, []);
  });
});
