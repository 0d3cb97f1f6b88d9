// The OpenAPI document as generators see it: the committed copy and the generated client files are
// what the declarations produce, every endpoint is named and in the typed client, and a client made
// by mainstream generators (openapi-typescript's types + openapi-fetch) places an order on a real
// server. (`npm test` also lints the document with Spectral: .spectral.yaml.)
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import createFetchClient from 'openapi-fetch';
import type { paths } from '../packages/client/src/openapi.ts';
import { endpoints } from '../src/client.ts';
import { errorsOf } from '../src/platform/endpoint.ts';
import { errorCatalog } from '../src/errors.ts';
import { limits } from '../src/limits.ts';
import { webhookEventTypes } from '../src/modules/webhooks/schemas.ts';
import { packageRoot } from '../src/platform/paths.ts';
import { openApiDocument } from '../scripts/generate-client.ts';
import { engines } from './support/database.ts';
import { startFreshServer, type RunningServer } from './support/engine-process.ts';

type Operation = {
  operationId?: string;
  parameters?: { name: string; in: string; required?: boolean }[];
  responses: Record<string, unknown>;
};

describe('the OpenAPI document', () => {
  it('packages/client/openapi.json and the generated client files are what the endpoint declarations produce', () => {
    const run = spawnSync(process.execPath, [join(packageRoot, 'scripts', 'generate-client.ts'), '--check'], {
      encoding: 'utf8',
    });
    assert.equal(run.status, 0, run.stderr);
  });

  it('names every operation, and src/client.ts has every endpoint under its operationId', async () => {
    const doc = (await openApiDocument()) as { paths: Record<string, Record<string, Operation>> };
    const ids = Object.values(doc.paths).flatMap((methods) => Object.values(methods).map((op) => op.operationId));
    assert.ok(
      ids.every((id) => typeof id === 'string' && /^[a-z][A-Za-z0-9]+$/.test(id)),
      `every operation has a camelCase operationId: ${ids.join(', ')}`,
    );
    assert.equal(new Set(ids).size, ids.length, 'operationIds are unique');
    for (const [key, e] of Object.entries(endpoints))
      assert.equal(e.operationId, key, `endpoints.${key} is declared as ${e.operationId}`);
    const missing = ids.filter((id) => !(id! in endpoints) && id !== 'healthz' && id !== 'readyz');
    assert.deepEqual(missing, [], 'add these endpoints to the endpoints map in src/client.ts');
  });

  it('declares the Idempotency-Key header and every error status an endpoint can answer', async () => {
    const doc = (await openApiDocument()) as { paths: Record<string, Record<string, Operation>> };
    const place = doc.paths['/v1/orders']!.post!;
    assert.equal(place.parameters?.find((p) => p.name === 'Idempotency-Key')?.required, true);
    assert.equal(
      doc.paths['/v1/conversations']!.post!.parameters?.find((p) => p.name === 'Idempotency-Key')?.required,
      false,
    );
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const op of Object.values(methods)) {
        const e = Object.values(endpoints).find((x) => x.operationId === op.operationId);
        if (!e) continue;
        const statuses = Object.keys(op.responses)
          .filter((s) => Number(s) >= 400)
          .map(Number)
          .sort();
        const expected = [...new Set(errorsOf(e).map((code) => errorCatalog[code].status))].sort();
        assert.deepEqual(statuses, expected, `${path} ${op.operationId}`);
      }
    }
    assert.match(JSON.stringify(place.responses['409']), /out_of_stock/);
  });

  it('says exactly what a webhook url and events and an order line quantity accept, as the service enforces them', async () => {
    const doc = (await openApiDocument()) as {
      paths: Record<
        string,
        Record<
          string,
          {
            requestBody: {
              content: Record<string, { schema: { properties: Record<string, Record<string, unknown>> } }>;
            };
          }
        >
      >;
    };
    const webhook =
      doc.paths['/v1/webhook-endpoints']!.post!.requestBody.content['application/json']!.schema.properties;
    assert.equal(webhook.url!.format, 'uri');
    assert.equal(webhook.url!.pattern, '^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]');
    // ["*"] alone, or a list of the types without "*" (Fastify's document spells each const as an enum of one).
    const [all, some] = webhook.events!.anyOf as {
      maxItems: number;
      uniqueItems?: boolean;
      items: { enum?: string[]; anyOf?: { enum: string[] }[] };
    }[];
    assert.deepEqual([all!.maxItems, all!.items.enum], [1, ['*']]);
    assert.deepEqual(
      [some!.maxItems, some!.uniqueItems, some!.items.anyOf!.flatMap((t) => t.enum)],
      [webhookEventTypes.length, true, [...webhookEventTypes]],
    );
    const lines = doc.paths['/v1/orders']!.post!.requestBody.content['application/json']!.schema.properties.lines as {
      items: { properties: { quantity: Record<string, unknown> } };
    };
    assert.deepEqual(
      [lines.items.properties.quantity.minimum, lines.items.properties.quantity.maximum],
      [1, limits.quantityPerLine],
    );
  });

  it('declares GET /v1/events as text/event-stream, the media type it answers, and no JSON', async () => {
    const doc = (await openApiDocument()) as {
      paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, unknown> }> }>>;
    };
    assert.deepEqual(Object.keys(doc.paths['/v1/events']!.get!.responses['200']!.content ?? {}), ['text/event-stream']);
  });
});

for (const engine of engines('one')) {
  describe(`a client generated by openapi-typescript and openapi-fetch [${engine}]`, () => {
    let server: RunningServer;
    const admin = { email: 'admin@generated.test', password: 'generated-client-password' };
    before(async () => {
      server = await startFreshServer(engine, { ADMIN_EMAIL: admin.email, ADMIN_PASSWORD: admin.password });
    });
    after(async () => {
      await server?.stop();
    });

    it('places an order', async () => {
      const api = createFetchClient<paths>({ baseUrl: server.baseUrl });
      const login = await api.POST('/v1/auth/login', { body: admin });
      assert.equal(login.response.status, 200);
      const adminAuth = { authorization: `Bearer ${login.data!.token}` };
      const product = await api.POST('/v1/products', {
        headers: adminAuth,
        body: { name: 'Cap', variants: [{ sku: 'GEN-CAP', price: { amount: 1500, currency: 'EUR' }, stock: 3 }] },
      });
      assert.equal(product.response.status, 201, JSON.stringify(product.error));
      const signup = await api.POST('/v1/auth/signup', {
        body: { email: 'generated@example.com', password: 'correct horse battery staple', name: 'Gen' },
      });
      const order = await api.POST('/v1/orders', {
        params: { header: { 'Idempotency-Key': `gen-${engine}-1` } },
        headers: { authorization: `Bearer ${signup.data!.token}` },
        body: { lines: [{ sku: 'GEN-CAP', quantity: 2 }], payment: { method: 'card', token: 'tok_ok' } },
      });
      assert.equal(order.response.status, 201, JSON.stringify(order.error));
      const placed: string = order.data!.status;
      assert.equal(placed, 'pending_payment');
      assert.equal(order.data!.total.amount, 3000);
      // The error side is typed too: a problem with its code.
      const tooMany = await api.POST('/v1/orders', {
        params: { header: { 'Idempotency-Key': `gen-${engine}-2` } },
        headers: { authorization: `Bearer ${signup.data!.token}` },
        body: { lines: [{ sku: 'GEN-CAP', quantity: 5 }], payment: { method: 'card', token: 'tok_ok' } },
      });
      assert.equal(tooMany.error?.code, 'out_of_stock');
    });
  });
}
