// Traces on both engines, exported to memory: one order's spans connect (the POST /v1/orders
// server span, the SQL of its transaction under it, and the job that charges it, with the charge's
// own SQL), statement spans carry the text and never the values, an incoming traceparent is
// continued, and the request's log lines name its trace.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { engines } from './support/database.ts';
import { startTestEnv, type TestEnv } from './support/app.ts';
import { waitFor } from './support/wait.ts';
import { startWebhookReceiver, type WebhookReceiver } from './support/webhook-receiver.ts';
import { endpoints } from '../src/client.ts';
import { startTracing } from '../src/platform/tracing.ts';
import { ConfigError, loadConfig } from '../src/config.ts';

const exporter = new InMemorySpanExporter();
let stopTracing: (() => Promise<void>) | undefined;
before(async () => {
  stopTracing = await startTracing(undefined, { spanProcessor: new SimpleSpanProcessor({ exporter }) });
});
after(async () => {
  await stopTracing?.();
});

const SERVER = 1;
const CONSUMER = 4;

function traceOf(span: ReadableSpan): string {
  return span.spanContext().traceId;
}
function idOf(span: ReadableSpan): string {
  return span.spanContext().spanId;
}

/** Whether `span` descends from `ancestor` through parent links among `spans`. */
function descendsFrom(span: ReadableSpan, ancestor: ReadableSpan, spans: ReadableSpan[]): boolean {
  const byId = new Map(spans.map((s) => [idOf(s), s]));
  for (let s: ReadableSpan | undefined = span; s; s = byId.get(s.parentSpanContext?.spanId ?? '')) {
    if (idOf(s) === idOf(ancestor)) return true;
  }
  return false;
}

for (const engine of engines('one')) {
  describe(`tracing [${engine}]`, () => {
    let env: TestEnv;
    let receiver: WebhookReceiver;
    before(async () => {
      env = await startTestEnv(engine, { WEBHOOK_ALLOW_PRIVATE_URLS: 'true' }, { workers: true });
      receiver = await startWebhookReceiver();
    });
    after(async () => {
      await env?.close();
      await receiver?.close();
    });

    it("connects one order's spans: its request, the SQL of its transaction, the job that charges it, and its webhook delivery", async () => {
      const sku = `TRACE-${engine}`;
      await env.client.ok(endpoints.createWebhookEndpoint, {
        token: env.adminToken,
        body: { url: receiver.url, events: ['order.created'] },
      });
      await env.product([{ sku, stock: 5 }]);
      const buyer = await env.customer();
      exporter.reset(); // the spans of this engine's order only
      const key = `trace-key-${engine}`;
      const order = await env.client.ok(endpoints.placeOrder, {
        token: buyer.token,
        idempotencyKey: key,
        body: { lines: [{ sku, quantity: 1 }], payment: { method: 'card', token: 'tok_ok' } },
      });
      const spans = await waitFor('the charge job span', async () => {
        const all = exporter.getFinishedSpans();
        return all.some(
          (s) =>
            s.name === 'process payments.charge' &&
            s.kind === CONSUMER &&
            all.some((u) => u.name === 'UPDATE payments' && descendsFrom(u, s, all)),
        )
          ? all
          : undefined;
      });

      const server = spans.find(
        (s) => s.kind === SERVER && s.name === 'POST /v1/orders' && s.attributes['http.response.status_code'] === 201,
      );
      assert.ok(server, `no server span among ${spans.map((s) => s.name).join(', ')}`);
      assert.equal(server.attributes['http.route'], '/v1/orders');
      const trace = traceOf(server);

      // The order's transaction and its statements are in the request's trace, under its span.
      const mine = spans.filter((s) => traceOf(s) === trace);
      const transaction = mine.find(
        (s) => s.name === 'transaction' && mine.some((t) => t.name === 'INSERT orders' && descendsFrom(t, s, mine)),
      );
      assert.ok(transaction && descendsFrom(transaction, server, mine), 'the order transaction under the request span');
      const insert = mine.find((s) => s.name === 'INSERT orders')!;
      assert.equal(insert.attributes['db.system.name'], 'postgresql');
      assert.match(String(insert.attributes['db.query.text']), /INSERT INTO orders/);
      // Statement texts only: no parameter value (the card token, the key, the customer) anywhere.
      for (const s of spans.filter((x) => x.attributes['db.query.text'] !== undefined)) {
        const text = JSON.stringify(s.attributes);
        for (const value of ['tok_ok', key, buyer.id]) assert.ok(!text.includes(value), `${s.name} carries ${value}`);
      }

      // The charge job: in the same trace (a job fetched alone), or linked to it (a batch).
      const charge = spans.find(
        (s) =>
          s.name === 'process payments.charge' &&
          (traceOf(s) === trace || s.links.some((l) => l.context.traceId === trace)),
      );
      assert.ok(charge, "a charge span in, or linked to, the order's trace");
      assert.equal(charge.attributes['messaging.destination.name'], 'payments.charge');
      assert.ok(
        spans.some((s) => s.name === 'UPDATE payments' && descendsFrom(s, charge, spans)),
        "the charge's SQL under its span",
      );
      await waitFor('the order to be paid', async () => {
        const o = await env.client.ok(endpoints.getOrder, { token: buyer.token, params: { id: order.id } });
        return o.status === 'paid' ? true : undefined;
      });

      // The webhook delivery of its order.created event, made later by the dispatcher, joins it too.
      const delivery = await waitFor('the delivery span', async () =>
        exporter.getFinishedSpans().find((s) => s.name === 'process webhooks.deliver' && traceOf(s) === trace),
      );
      assert.equal(delivery.kind, CONSUMER);
      await receiver.waitForRequests(1);

      // The request's log lines name its trace.
      const lines = env.logs.map((l) => JSON.parse(l) as { trace_id?: string; msg?: string });
      assert.ok(
        lines.some((l) => l.trace_id === trace && l.msg === 'request completed'),
        "the request's log line with the trace id",
      );
    });

    it('continues the trace of an incoming traceparent', async () => {
      const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
      const res = await env.app.inject({
        method: 'GET',
        url: '/v1/products',
        headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
      });
      assert.equal(res.statusCode, 200);
      const server = await waitFor('the server span', async () =>
        exporter.getFinishedSpans().find((s) => s.kind === SERVER && traceOf(s) === traceId),
      );
      assert.equal(server.name, 'GET /v1/products');
      assert.equal(server.parentSpanContext?.spanId, '00f067aa0ba902b7');
      assert.ok(
        exporter.getFinishedSpans().some((s) => traceOf(s) === traceId && s.name.startsWith('SELECT')),
        'its SQL in the same trace',
      );
    });
  });
}

describe('tracing settings', () => {
  it('are off without an OTLP endpoint, and read from the standard OTEL_* variables with one', () => {
    assert.equal(loadConfig({}).tracing, undefined);
    assert.equal(
      loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'true' }).tracing,
      undefined,
    );
    assert.deepEqual(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).tracing, {
      tracesUrl: 'http://collector:4318/v1/traces',
      headers: {},
      serviceName: 'engine-room',
      sampler: 'parentbased_always_on',
      samplerRatio: 1,
    });
    assert.deepEqual(
      loadConfig({
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://vendor.example/otlp/traces',
        OTEL_EXPORTER_OTLP_HEADERS: 'api-key=s%3Dcret, x-team=ops',
        OTEL_SERVICE_NAME: 'shop-api',
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '0.25',
      }).tracing,
      {
        tracesUrl: 'https://vendor.example/otlp/traces',
        headers: { 'api-key': 's=cret', 'x-team': 'ops' },
        serviceName: 'shop-api',
        sampler: 'parentbased_traceidratio',
        samplerRatio: 0.25,
      },
    );
  });

  it('refuses what it cannot honour, naming the variable', () => {
    const base = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' };
    for (const [env, name] of [
      [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }, 'OTEL_EXPORTER_OTLP_ENDPOINT'],
      [{ ...base, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }, 'OTEL_EXPORTER_OTLP_PROTOCOL'],
      [{ ...base, OTEL_TRACES_SAMPLER: 'sometimes' }, 'OTEL_TRACES_SAMPLER'],
      [{ ...base, OTEL_TRACES_SAMPLER_ARG: '1.5' }, 'OTEL_TRACES_SAMPLER_ARG'],
      [{ ...base, OTEL_TRACES_SAMPLER_ARG: 'half' }, 'OTEL_TRACES_SAMPLER_ARG'],
      [{ ...base, OTEL_EXPORTER_OTLP_HEADERS: 'no-equals-sign' }, 'OTEL_EXPORTER_OTLP_HEADERS'],
    ] as const) {
      assert.throws(
        () => loadConfig(env),
        (err: Error) => err instanceof ConfigError && err.message.startsWith(name),
        name,
      );
    }
  });
});
