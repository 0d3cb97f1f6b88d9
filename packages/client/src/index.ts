// @engine-room/client: a typed client for the Engine Room API, one method per operation.
//
//   import { createClient } from '@engine-room/client';
//   const api = createClient({ baseUrl: 'http://127.0.0.1:3000' });
//   const { token } = await api.login({ body: { email, password } });
//   const order = await api.placeOrder({ token, body: { lines: [{ sku: 'TEE-M', quantity: 2 }], payment: { method: 'card', token: 'tok_ok' } } });
//   for await (const e of api.events({ token })) console.log(e.event, e.data);
//
// Types and the operation table are generated from the server's endpoint declarations (openapi.ts,
// operations.ts). Every operation that takes an Idempotency-Key gets one, generated when you give
// none and reused on the client's own retries; 429 and 503 are retried as Retry-After says (bounded).
import { createCore, fetchTransport, type Answer, type Problem, type RetryOptions, type Transport } from './core.ts';
import { eventStream, type StreamEvent } from './events.ts';
import { operations, type OperationId } from './operations.ts';
import type { operations as Operations, components } from './openapi.ts';

export { ApiError, fetchTransport, newIdempotencyKey, retryAfterMs, type Problem, type RetryOptions, type Transport, type RawRequest, type RawResponse } from './core.ts';
export { eventStream, parseEventStream, type StreamEvent, type EventStreamOptions } from './events.ts';
export { operations, type OperationId } from './operations.ts';
export type { paths, operations as OperationTypes, components } from './openapi.ts';

/** The schemas of the API by name (Problem...). */
export type Schemas = components['schemas'];

type Op<K extends OperationId> = Operations[K];
type Never<T> = [T] extends [never] ? true : [T] extends [undefined] ? true : false;

type ParamsPart<K extends OperationId> = Op<K>['parameters'] extends { path: infer P } ? (Never<P> extends true ? object : { params: P }) : object;
type QueryPart<K extends OperationId> = Op<K>['parameters'] extends { query: infer Q } ? (Never<Q> extends true ? object : { query: Q })
  : Op<K>['parameters'] extends { query?: infer Q } ? (Never<Q> extends true ? object : { query?: Q }) : object;
type BodyPart<K extends OperationId> = Op<K> extends { requestBody: { content: { 'application/json': infer B } } } ? { body: B }
  : Op<K> extends { requestBody?: { content: { 'application/json': infer B } } } ? { body?: B } : object;

/** What a call of operation K takes: its path parameters, query and body, as the server declares them. */
export type Input<K extends OperationId> = ParamsPart<K> & QueryPart<K> & BodyPart<K> & {
  /** A session token or API key (Authorization: Bearer); defaults to the client's token option. */
  token?: string;
  /** For operations that take one; generated when left out. */
  idempotencyKey?: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
};

type SuccessStatus = 200 | 201 | 202 | 204;
type ContentOf<R> = R extends { content: { 'application/json': infer B } } ? B : R extends { content: { 'text/event-stream': infer B } } ? B : undefined;
/** The body of operation K's success answer. */
export type Output<K extends OperationId> = ContentOf<Op<K>['responses'][Extract<keyof Op<K>['responses'], SuccessStatus>]>;

export type Result<K extends OperationId> =
  | { ok: true; status: number; body: Output<K>; headers: Record<string, string> }
  | { ok: false; status: number; body: Problem; headers: Record<string, string> };

export interface ClientOptions {
  /** Where the API is: https://api.shop.example (or '' in a browser page served by the API itself). */
  baseUrl: string;
  /** Sent on every call that gives none: a token, or a function answering the current one. */
  token?: string | (() => string | undefined);
  /** For a browser app that signs in with the session cookie: sent as X-CSRF-Token on unsafe requests. */
  csrfToken?: string | (() => string | undefined);
  /** 'include' to send the session cookie to an API on another origin. */
  credentials?: 'omit' | 'same-origin' | 'include';
  fetch?: typeof fetch;
  /** Retries of 429, 503 and lost requests (default 3 attempts, waits up to 10 s); false for none. */
  retry?: RetryOptions | false;
  /** Another way to send requests (tests); fetch otherwise. */
  transport?: Transport;
}

// eventStream is a stream, not an answer: events() below reads it.
type Methods = { [K in Exclude<OperationId, 'eventStream'>]: (...args: object extends Input<K> ? [input?: Input<K>] : [input: Input<K>]) => Promise<Output<K>> };

const unsafe = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export function createClient(options: ClientOptions) {
  const valueOf = (v: string | (() => string | undefined) | undefined) => (typeof v === 'function' ? v() : v);
  const transport = options.transport ?? fetchTransport(options.baseUrl, {
    ...(options.fetch ? { fetch: options.fetch } : {}), ...(options.credentials ? { credentials: options.credentials } : {}),
  });
  const core = createCore({ transport, ...(options.retry !== undefined ? { retry: options.retry } : {}) });

  function callOf<K extends OperationId>(id: K, input: Input<K> | undefined) {
    const spec = operations[id] as { method: string; path: string; idempotencyKey?: 'required' | 'optional' };
    const i = (input ?? {}) as { params?: Record<string, unknown>; query?: Record<string, unknown>; body?: unknown; token?: string; idempotencyKey?: string; headers?: Record<string, string>; signal?: AbortSignal };
    const token = i.token ?? valueOf(options.token);
    const csrf = unsafe.has(spec.method) ? valueOf(options.csrfToken) : undefined;
    return {
      method: spec.method, path: spec.path,
      ...(spec.idempotencyKey ? { idempotencyKey: spec.idempotencyKey } : {}),
      ...(i.params ? { params: i.params } : {}), ...(i.query ? { query: i.query } : {}),
      ...(i.body !== undefined ? { body: i.body } : {}),
      ...(token ? { token } : {}), ...(i.idempotencyKey ? { key: i.idempotencyKey } : {}),
      headers: { ...(csrf ? { 'x-csrf-token': csrf } : {}), ...i.headers },
      ...(i.signal ? { signal: i.signal } : {}),
    };
  }

  /** Calls operation K and answers status, body and headers, success or not (throws only when no answer came). */
  async function call<K extends OperationId>(id: K, ...[input]: object extends Input<K> ? [input?: Input<K>] : [input: Input<K>]): Promise<Result<K>> {
    return (await core.send(callOf(id, input as Input<K>))) as Answer as Result<K>;
  }

  /** Calls operation K and answers the body of its success; throws ApiError (with the problem) otherwise. */
  async function request<K extends OperationId>(id: K, ...[input]: object extends Input<K> ? [input?: Input<K>] : [input: Input<K>]): Promise<Output<K>> {
    return (await core.ok(callOf(id, input as Input<K>))) as Output<K>;
  }

  const methods = Object.fromEntries(
    (Object.keys(operations) as OperationId[]).filter((id) => id !== 'eventStream').map((id) => [id, (input?: Input<typeof id>) => core.ok(callOf(id, input))]),
  ) as unknown as Methods;

  /** The signed-in user's live events (GET /v1/events), resumed with Last-Event-ID after a disconnect. */
  function events(input: { token?: string; lastEventId?: string; signal?: AbortSignal; reconnect?: boolean } = {}): AsyncGenerator<StreamEvent> {
    const token = input.token ?? valueOf(options.token);
    return eventStream({
      baseUrl: options.baseUrl,
      ...(options.fetch ? { fetch: options.fetch } : {}), ...(options.credentials ? { credentials: options.credentials } : {}),
      ...(token ? { token } : {}), ...(input.lastEventId ? { lastEventId: input.lastEventId } : {}),
      ...(input.signal ? { signal: input.signal } : {}), ...(input.reconnect !== undefined ? { reconnect: input.reconnect } : {}),
    });
  }

  return { ...methods, call, request, events };
}

export type Client = ReturnType<typeof createClient>;
