// An endpoint is declared once, as data: method, path, who may call it, and its schemas. The route
// is registered from it (validation, serialization, OpenAPI), and the typed client in src/client.ts
// derives its types from the very same object, so server and client cannot drift apart.
import type { TSchema } from 'typebox';
import type { Access } from './auth.ts';

export interface Endpoint {
  method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  url: string;
  access: Access;
  summary: string;
  tags: readonly string[];
  description?: string;
  params?: TSchema;
  querystring?: TSchema;
  body?: TSchema;
  /** Status code to schema; a 204 has none. */
  response: Readonly<Record<number, TSchema>>;
  /** Whether Idempotency-Key is required; every POST accepts one. */
  idempotencyKey?: 'required' | 'optional';
  /** The response carries a secret (a token, a key): no cache may keep it (Cache-Control: no-store). */
  returnsSecret?: true;
}

export function endpoint<const E extends Endpoint>(e: E): E {
  return e;
}

/** The Fastify route options of an endpoint: schema and access, ready to spread into app.route. */
export function routeOf<const E extends Endpoint>(e: E) {
  return {
    method: e.method,
    url: e.url,
    config: { access: e.access, returnsSecret: e.returnsSecret === true },
    schema: {
      summary: e.summary,
      tags: [...e.tags],
      ...(e.description ? { description: e.description } : {}),
      // Only the parts an endpoint has: Fastify warns about keys that are present but undefined.
      ...(e.params ? { params: e.params } : {}) as { params: E['params'] },
      ...(e.querystring ? { querystring: e.querystring } : {}) as { querystring: E['querystring'] },
      ...(e.body ? { body: e.body } : {}) as { body: E['body'] },
      response: e.response as E['response'],
    },
  };
}
