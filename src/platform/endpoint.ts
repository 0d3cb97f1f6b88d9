// An endpoint is declared once, as data: method, path, who may call it, and its schemas. The route
// is registered from it (validation, serialization, OpenAPI), and the typed client in src/client.ts
// derives its types from the very same object, so server and client cannot drift apart.
import type { TSchema } from 'typebox';
import type { Access } from './auth.ts';
import type { ErrorCode } from '../errors.ts';

export interface Endpoint {
  method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  url: string;
  access: Access;
  /**
   * The operation's name in the OpenAPI document and in generated clients (packages/client):
   * camelCase, unique across the API. Renaming it is a breaking change for those clients.
   */
  operationId: string;
  summary: string;
  tags: readonly string[];
  description?: string;
  params?: TSchema;
  querystring?: TSchema;
  body?: TSchema;
  /** Status code to schema; a 204 has none. */
  response: Readonly<Record<number, TSchema>>;
  /** The media type of its 2xx answers when they are not JSON: a stream of Server-Sent Events. */
  produces?: 'text/event-stream';
  /** Whether Idempotency-Key is required; every POST accepts one. */
  idempotencyKey?: 'required' | 'optional';
  /**
   * The rate limit it counts against: 'auth' (signup, login, password reset: per client address,
   * tight); otherwise read (GET) or write by its method, per API key, user or client address.
   */
  rateLimit?: 'auth';
  /** The response carries a secret (a token, a key): no cache may keep it (Cache-Control: no-store). */
  returnsSecret?: true;
  /**
   * The error codes of this endpoint's own rules (out_of_stock, email_taken...). The ones that follow
   * from the declaration itself are added by errorsOf and need not be listed: validation_failed when
   * it takes input, not_found when its path names something, unauthenticated and forbidden from
   * its access, the idempotency codes, rate_limited and the 5xx. An empty list says "none".
   */
  errors: readonly ErrorCode[];
  /** An example request, shown in /docs ("Try it out" starts from it); the OpenAPI lint checks it against the schemas. */
  example?: { body?: unknown; params?: Record<string, unknown>; query?: Record<string, unknown> };
}

declare module 'fastify' {
  interface FastifyContextConfig {
    endpoint?: Endpoint;
  }
}

export function endpoint<const E extends Endpoint>(e: E): E {
  return e;
}

/** Every error code an endpoint can answer: its declared ones plus those its declaration implies. */
export function errorsOf(e: Endpoint): ErrorCode[] {
  const codes: ErrorCode[] = [];
  if (e.params || e.querystring || e.body) codes.push('validation_failed');
  // Any method but GET may be sent a body: one that is not JSON (bad_request), not application/json
  // or too large is refused as such, and a route that declares none refuses any but {} (http.ts).
  if (e.body || e.method !== 'GET')
    codes.push('validation_failed', 'bad_request', 'payload_too_large', 'unsupported_media_type');
  // A path segment beyond what the router matches a parameter to is 414 uri_too_long (src/app.ts).
  if (e.params) codes.push('not_found', 'uri_too_long');
  if (e.access !== 'public') {
    codes.push('unauthenticated');
    // A role outside the list, or an unsafe request made with the session cookie but no CSRF token.
    if (e.access.length < 3 || e.method !== 'GET') codes.push('forbidden');
  }
  if (e.idempotencyKey) {
    // A malformed key is a validation failure, even on an endpoint that takes no other input.
    codes.push('validation_failed', 'idempotency_key_reused', 'idempotency_key_in_use');
    if (e.idempotencyKey === 'required') codes.push('idempotency_key_required');
  }
  codes.push(...e.errors, 'rate_limited', 'internal', 'unavailable');
  return [...new Set(codes)];
}

/** The Fastify route options of an endpoint: schema and access, ready to spread into app.route. */
export function routeOf<const E extends Endpoint>(e: E) {
  return {
    method: e.method,
    url: e.url,
    config: {
      access: e.access,
      returnsSecret: e.returnsSecret === true,
      endpoint: e as Endpoint,
      ...(e.rateLimit ? { rateLimit: e.rateLimit } : {}),
    },
    schema: {
      operationId: e.operationId,
      summary: e.summary,
      tags: [...e.tags],
      ...(e.description ? { description: e.description } : {}),
      // Only the parts an endpoint has: Fastify warns about keys that are present but undefined.
      ...((e.params ? { params: e.params } : {}) as { params: E['params'] }),
      ...((e.querystring ? { querystring: e.querystring } : {}) as { querystring: E['querystring'] }),
      ...((e.body ? { body: e.body } : {}) as { body: E['body'] }),
      response: e.response as E['response'],
    },
  };
}
