// Traces (OpenTelemetry), on when OTEL_EXPORTER_OTLP_ENDPOINT is set, and free when it is not:
// nothing of OpenTelemetry is even loaded then (every function here returns at its first line),
// and the SDK and its exporter are loaded by a dynamic import only when tracing starts.
//
// Spans are made by hand at the few places everything goes through, rather than by the
// auto-instrumentation packages (which patch CommonJS `require` and need loader hooks under ESM;
// see docs/ARCHITECTURE.md, "Traces"):
// - HTTP: a server span per request (registerHttpTracing, Fastify hooks), child of an incoming
//   W3C `traceparent`;
// - SQL: a span per transaction with a span per statement under it, and a span per statement
//   outside one (traceDb, around the database port); the statement's text, never its parameters.
//   Only inside a request or a job: the queue's polling would otherwise start a trace every poll;
// - jobs: a span per job, child of the trace that enqueued it (enqueue stores a `traceparent` in
//   the job's data, under jobTraceKey); a batch of jobs (charges) gets one span with a link to
//   each job's trace (inJobSpan);
// - an order batch (orders/place.ts): one span for the shared transaction, child of the first
//   request and linked to the others (inBatchSpan).
// And log lines written inside a span carry its trace_id and span_id (traceLogFields).
import type * as OtelApi from '@opentelemetry/api';
import type { Attributes, Context, Link, Span, Tracer } from '@opentelemetry/api';
import type { SpanProcessor } from '@opentelemetry/sdk-trace';
import type { FastifyInstance } from 'fastify';
import type { Db, Tx } from './db.ts';

type Api = typeof OtelApi;

export interface TracingSettings {
  /** OTLP/HTTP endpoint of the traces (the collector's /v1/traces). */
  tracesUrl: string;
  /** Headers sent with every export (a vendor's API key). */
  headers: Record<string, string>;
  serviceName: string;
  /** OTEL_TRACES_SAMPLER: always_on, always_off, traceidratio, or parentbased_ one of those. */
  sampler: string;
  /** OTEL_TRACES_SAMPLER_ARG: the ratio of traceidratio samplers, 0 to 1. */
  samplerRatio: number;
}

let otel: Api | undefined;
let tracer: Tracer | undefined;

/** The key under which a job's data carries the traceparent of the trace that enqueued it. */
export const jobTraceKey = '_traceparent';

export function tracingEnabled(): boolean {
  return tracer !== undefined;
}

/**
 * Loads and starts the OpenTelemetry SDK, registered as the process's tracer provider, with a
 * batching OTLP/HTTP exporter (or, for tests, the span processor given). Answers the function that
 * flushes and stops it, or undefined when tracing is off (no settings).
 */
export async function startTracing(
  settings: TracingSettings | undefined,
  test?: { spanProcessor: SpanProcessor },
): Promise<(() => Promise<void>) | undefined> {
  if (!settings && !test) return undefined;
  const [api, { NodeSDK }, sdkTrace, { OTLPTraceExporter }] = await Promise.all([
    import('@opentelemetry/api'),
    import('@opentelemetry/sdk-node'),
    import('@opentelemetry/sdk-trace'),
    import('@opentelemetry/exporter-trace-otlp-proto'),
  ]);
  const ratio = settings?.samplerRatio ?? 1;
  const base = {
    always_on: new sdkTrace.AlwaysOnSampler(),
    always_off: new sdkTrace.AlwaysOffSampler(),
    traceidratio: new sdkTrace.TraceIdRatioBasedSampler(ratio),
  };
  const name = settings?.sampler ?? 'parentbased_always_on';
  const root = base[name.replace(/^parentbased_/, '') as keyof typeof base];
  const sampler = name.startsWith('parentbased_') ? new sdkTrace.ParentBasedSampler({ root }) : root;
  // An order makes a few dozen spans: a queue larger than the default 2,048 rides out a busy second
  // (spans beyond it are dropped, never waited for).
  const spanProcessor =
    test?.spanProcessor ??
    new sdkTrace.BatchSpanProcessor({
      exporter: new OTLPTraceExporter({ url: settings!.tracesUrl, headers: settings!.headers }),
      maxQueueSize: 16_384,
      maxExportBatchSize: 1024,
    });
  const sdk = new NodeSDK({
    serviceName: settings?.serviceName ?? 'engine-room',
    spanProcessors: [spanProcessor],
    sampler,
    // Traces only: no metrics (Prometheus has them) and no logs (standard output has them).
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [],
  });
  sdk.start();
  otel = api;
  tracer = api.trace.getTracer('engine-room');
  return async () => {
    tracer = undefined;
    await sdk.shutdown();
  };
}

// ---------------------------------------------------------------------------------------------
// Carrying a trace across the queue: a W3C traceparent string

/** The traceparent of the span running now, or undefined (tracing off, or no span). */
export function currentTraceparent(): string | undefined {
  if (!otel || !tracer) return undefined;
  const carrier: Record<string, string> = {};
  otel.propagation.inject(otel.context.active(), carrier);
  return carrier.traceparent;
}

function contextOf(api: Api, traceparent: string | undefined): Context {
  return traceparent ? api.propagation.extract(api.ROOT_CONTEXT, { traceparent }) : api.ROOT_CONTEXT;
}

/** The job's data with the trace it is enqueued from (given, or the current one), when tracing is on. */
export function withJobTrace(data: object, traceparent: string | undefined = currentTraceparent()): object {
  return traceparent === undefined ? data : { ...data, [jobTraceKey]: traceparent };
}

function linksTo(api: Api, traceparents: readonly (string | undefined)[]): Link[] {
  return traceparents.flatMap((t) => {
    const spanContext = t ? api.trace.getSpanContext(contextOf(api, t)) : undefined;
    return spanContext ? [{ context: spanContext }] : [];
  });
}

async function inSpan<T>(api: Api, span: Span, context: Context, fn: () => Promise<T>): Promise<T> {
  try {
    return await api.context.with(api.trace.setSpan(context, span), fn);
  } catch (err) {
    span.setStatus({ code: api.SpanStatusCode.ERROR, message: (err as Error)?.name ?? 'Error' });
    throw err;
  } finally {
    span.end();
  }
}

/**
 * Runs fn for the jobs of one fetch (one job, or a batch) in a span: a single job's span is a child
 * of the trace that enqueued it; a batch's span links to each job's trace (a span has one parent,
 * and a batch serves many requests: OpenTelemetry's messaging conventions use links for this).
 */
export function inJobSpan<T>(
  queue: string,
  jobs: readonly { id: string; data: unknown }[],
  fn: () => Promise<T>,
): Promise<T> {
  const api = otel;
  if (!api || !tracer) return fn();
  const origins = jobs.map((job) => (job.data as Record<string, unknown> | null)?.[jobTraceKey] as string | undefined);
  const single = jobs.length === 1;
  const parent = single ? contextOf(api, origins[0]) : api.ROOT_CONTEXT;
  const attributes: Attributes = {
    'messaging.system': 'pg-boss',
    'messaging.operation.type': 'process',
    'messaging.destination.name': queue,
  };
  if (single) attributes['messaging.message.id'] = jobs[0]!.id;
  else attributes['messaging.batch.message_count'] = jobs.length;
  const span = tracer.startSpan(
    `process ${queue}`,
    { kind: api.SpanKind.CONSUMER, attributes, links: single ? [] : linksTo(api, origins) },
    parent,
  );
  return inSpan(api, span, parent, fn);
}

/** Runs fn (work done for several requests together) in a span: child of the first, linked to the others. */
export function inBatchSpan<T>(
  name: string,
  traceparents: readonly (string | undefined)[],
  fn: () => Promise<T>,
): Promise<T> {
  const api = otel;
  if (!api || !tracer) return fn();
  const parent = contextOf(api, traceparents[0]);
  const span = tracer.startSpan(
    name,
    { attributes: { 'engine_room.batch.size': traceparents.length }, links: linksTo(api, traceparents.slice(1)) },
    parent,
  );
  return inSpan(api, span, parent, fn);
}

// ---------------------------------------------------------------------------------------------
// SQL

const maxTextLength = 2048;
const summaries = new Map<string, string>();

/**
 * "INSERT orders", "UPDATE stock_levels", "SELECT sessions": a low-cardinality span name for a
 * statement, from the first table it writes (a WITH's included), else the first it reads.
 */
function summaryOf(text: string): string {
  let name = summaries.get(text);
  if (name === undefined) {
    const write = /\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+([\w.]+)/i.exec(text);
    const read = /\bFROM\s+([\w.]+)/i.exec(text);
    const verb = /^\s*(\w+)/.exec(text)?.[1]?.toUpperCase() ?? 'SQL';
    name = write
      ? `${write[1]!.split(/\s/)[0]!.toUpperCase()} ${write[2]}`
      : read && (verb === 'SELECT' || verb === 'WITH')
        ? `SELECT ${read[1]}`
        : verb;
    if (summaries.size < 1000) summaries.set(text, name);
  }
  return name;
}

/** A statement's span: a child of `parent`; the text is recorded, parameter values never (nor error messages, which can quote them). */
async function statementSpan<T>(api: Api, t: Tracer, parent: Context, text: string, run: () => Promise<T>): Promise<T> {
  const span = t.startSpan(
    summaryOf(text),
    {
      kind: api.SpanKind.CLIENT,
      attributes: {
        'db.system.name': 'postgresql',
        'db.query.text': text.length > maxTextLength ? text.slice(0, maxTextLength) : text,
      },
    },
    parent,
  );
  try {
    return await run();
  } catch (err) {
    const code = (err as { code?: string }).code;
    span.setAttributes({ 'error.type': code ?? 'Error', ...(code ? { 'db.response.status_code': code } : {}) });
    span.setStatus({ code: api.SpanStatusCode.ERROR });
    throw err;
  } finally {
    span.end();
  }
}

/**
 * The database port with spans (tracing on), or db itself (off). Statements and transactions are
 * traced only inside a span (a request or a job).
 */
export function traceDb(db: Db): Db {
  const api = otel;
  const t = tracer;
  if (!api || !t) return db;
  const traced = <T>(text: string, run: () => Promise<T>): Promise<T> => {
    const parent = api.context.active();
    return api.trace.getSpan(parent) ? statementSpan(api, t, parent, text, run) : run();
  };
  const wrapTx = (tx: Tx, context: Context): Tx => ({
    inTransaction: true,
    query: (text, params) => statementSpan(api, t, context, text, () => tx.query(text, params)),
    exec: (sql) => statementSpan(api, t, context, sql, () => tx.exec(sql)),
    afterCommit: (fn) => tx.afterCommit(fn),
  });
  return {
    ...db,
    query: (text, params) => traced(text, () => db.query(text, params)),
    exec: (sql) => traced(sql, () => db.exec(sql)),
    transaction: (fn) => {
      const parent = api.context.active();
      if (!api.trace.getSpan(parent)) return db.transaction(fn);
      const span = t.startSpan(
        'transaction',
        { kind: api.SpanKind.CLIENT, attributes: { 'db.system.name': 'postgresql' } },
        parent,
      );
      const context = api.trace.setSpan(parent, span);
      let attempts = 0;
      return inSpan(api, span, parent, () =>
        db.transaction((tx) => {
          // A deadlock or serialization failure runs fn again (db.ts): each run is an attempt.
          span.setAttribute('db.transaction.attempts', ++attempts);
          return fn(wrapTx(tx, context));
        }),
      );
    },
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP

/**
 * A server span per request, from its arrival to its response's end (or the connection's close),
 * named by the route pattern, child of an incoming `traceparent`. Nothing is registered when
 * tracing is off. Register it before any other hook, so that the others run inside the span.
 */
export function registerHttpTracing(app: FastifyInstance): void {
  const api = otel;
  const t = tracer;
  if (!api || !t) return;
  app.addHook('onRequest', (request, reply, done) => {
    const parent = api.propagation.extract(api.ROOT_CONTEXT, request.headers);
    const route = request.routeOptions.url;
    const span = t.startSpan(
      `${request.method} ${route ?? 'unmatched'}`,
      {
        kind: api.SpanKind.SERVER,
        attributes: {
          'http.request.method': request.method,
          'url.path': request.url.split('?')[0] ?? request.url,
          ...(route ? { 'http.route': route } : {}),
          'engine_room.request_id': request.id,
        },
      },
      parent,
    );
    const context = api.trace.setSpan(parent, span);
    // The body arrives, and the response finishes, in the socket's events, outside this hook's
    // context: bound, their listeners (body parsing, the hooks after it, the handler, the
    // "request completed" log line) run inside the span.
    api.context.bind(context, request.raw);
    api.context.bind(context, reply.raw);
    reply.raw.once('close', () => {
      const status = reply.raw.statusCode;
      span.setAttribute('http.response.status_code', status);
      if (status >= 500) span.setStatus({ code: api.SpanStatusCode.ERROR });
      if (!reply.raw.writableFinished) span.setAttribute('engine_room.aborted', true);
      span.end();
    });
    api.context.with(context, done);
  });
}

// ---------------------------------------------------------------------------------------------
// Logs

/** { trace_id, span_id } of the span running now, for pino's mixin; {} when there is none. */
export function traceLogFields(): Record<string, string> {
  if (!otel || !tracer) return {};
  const span = otel.trace.getSpan(otel.context.active());
  if (!span) return {};
  const { traceId, spanId } = span.spanContext();
  return { trace_id: traceId, span_id: spanId };
}
