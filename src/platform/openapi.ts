// The OpenAPI 3.1 document is generated from the endpoint declarations (the same schemas that
// validate requests and serialize responses), and /docs renders it with swagger-ui served from this
// process. What a declaration implies is written into the document here, once, for every operation:
// its Idempotency-Key header, every error status it can answer (problem+json, with the codes),
// example requests, and the integer formats that follow from the declared bounds. Generated clients
// (packages/client, openapi-typescript) and the lint in `npm test` (.spectral.yaml) read the result.
import type { FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { ProblemSchema, idempotencyKeyPattern } from './schemas.ts';
import { errorsOf, type Endpoint } from './endpoint.ts';
import { errorCatalog, problem, type ErrorCode } from '../errors.ts';

type Json = Record<string, unknown>;

const tagDescriptions: Record<string, string> = {
  accounts: 'Sign-up, sessions, API keys and roles',
  catalog: 'Products, variants and stock',
  orders: 'Orders and their payments',
  sandbox: 'The built-in test payment processor',
  ledger: 'The double-entry ledger and the audit',
  webhooks: 'Webhook endpoints and their deliveries',
  messaging: 'Conversations, messages, the live event stream and the dev mailbox',
  operations: 'Health, readiness and dead-lettered jobs',
};

const statusText: Record<number, string> = {
  400: 'Bad request',
  401: 'Unauthenticated',
  403: 'Forbidden',
  404: 'Not found',
  409: 'Conflict',
  413: 'Payload too large',
  414: 'URI too long',
  415: 'Unsupported media type',
  422: 'Unprocessable content',
  429: 'Too many requests',
  500: 'Internal server error',
  503: 'Service unavailable',
};

const retryAfter = {
  'Retry-After': {
    description: 'Seconds to wait before trying again',
    schema: { type: 'integer', format: 'int32', minimum: 0, maximum: 86_400 },
  },
};

// draft-ietf-httpapi-ratelimit-headers, on every answer of a limited operation (src/platform/api-rate-limit.ts).
const rateLimitHeaders = {
  RateLimit: {
    description:
      'What is left of the rate limit this request counted against: `"<policy>";r=<requests remaining>;t=<seconds until the window resets>`',
    schema: { type: 'string', maxLength: 100 },
    example: '"read";r=1187;t=42',
  },
  'RateLimit-Policy': {
    description:
      'The rate limit this request counted against: `"<policy>";q=<requests per window>;w=<window in seconds>`; policies are read, write (per API key, user or anonymous client address) and auth (per client address)',
    schema: { type: 'string', maxLength: 100 },
    example: '"read";q=1200;w=60',
  },
};

/** The error responses of an operation, one per status, listing its codes with an example of each. */
export function errorResponses(codes: readonly ErrorCode[]): Json {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) {
    const { status } = errorCatalog[code];
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const responses: Json = {};
  for (const [status, list] of [...byStatus].sort(([a], [b]) => a - b)) {
    responses[status] = {
      description: `${statusText[status] ?? 'Error'}: ${list.map((c) => `\`${c}\``).join(', ')}`,
      ...(status === 429 || status === 503 ? { headers: retryAfter } : {}),
      content: {
        'application/problem+json': {
          schema: { $ref: '#/components/schemas/Problem' },
          examples: Object.fromEntries(
            list.map((code) => [code, { summary: errorCatalog[code].title, value: problem(code) }]),
          ),
        },
      },
    };
  }
  return responses;
}

/** Integers a client sends get the format their bounds imply (int32 or int64), for generators and linters. */
function addIntegerFormats(schema: unknown): void {
  if (Array.isArray(schema)) {
    schema.forEach(addIntegerFormats);
    return;
  }
  if (!schema || typeof schema !== 'object') return;
  const s = schema as Json;
  if (s.type === 'integer' && s.format === undefined) {
    const min = typeof s.minimum === 'number' ? s.minimum : -Infinity;
    const max = typeof s.maximum === 'number' ? s.maximum : Infinity;
    s.format = min >= -(2 ** 31) && max <= 2 ** 31 - 1 ? 'int32' : 'int64';
  }
  for (const value of Object.values(s)) addIntegerFormats(value);
}

function idempotencyKeyParameter(e: Endpoint): Json {
  return {
    name: 'Idempotency-Key',
    in: 'header',
    required: e.idempotencyKey === 'required',
    description:
      'A key of your choosing, unique per intended operation (a UUID). Retrying with the same key and the same request replays the first answer (Idempotent-Replayed: true) and never repeats the effect; kept at least 24 hours.',
    schema: {
      type: 'string',
      minLength: 1,
      maxLength: 255,
      pattern: idempotencyKeyPattern.source.replace('{1,255}', '+'),
    },
    example: '0b9c6a52-3e58-4b0e-9f0e-5a3c2d1e4f60',
  };
}

/** Writes into one generated operation what its endpoint declaration implies. */
function completeOperation(operation: Json, e: Endpoint): void {
  const parameters = (operation.parameters as Json[] | undefined) ?? [];
  for (const p of parameters) {
    const example =
      p.in === 'path'
        ? e.example?.params?.[p.name as string]
        : p.in === 'query'
          ? e.example?.query?.[p.name as string]
          : undefined;
    if (example !== undefined) p.example = example;
    // A parameter with a default may be left out, whatever the schema's required list says.
    if ((p.schema as Json | undefined)?.default !== undefined) p.required = false;
    addIntegerFormats(p.schema);
  }
  if (e.idempotencyKey) parameters.push(idempotencyKeyParameter(e));
  if (parameters.length > 0) operation.parameters = parameters;
  const body = (operation.requestBody as { content?: Record<string, Json> } | undefined)?.content?.['application/json'];
  if (body) {
    // A body whose fields are all optional may be left out (Fastify takes none as valid): say so,
    // or generated clients would demand one, and an endpoint that gains options would break them.
    const required = (body.schema as Json | undefined)?.required;
    if (!Array.isArray(required) || required.length === 0) (operation.requestBody as Json).required = false;
    addIntegerFormats(body.schema);
    if (e.example?.body !== undefined) body.example = e.example.body;
  }
  if (e.access === 'public') operation.security = [];
  const responses = operation.responses as Json;
  if (e.produces) {
    for (const [status, response] of Object.entries(responses) as [string, { content?: Json }][]) {
      if (!status.startsWith('2') || !response.content?.['application/json']) continue;
      response.content = { [e.produces]: response.content['application/json'] };
    }
  }
  delete responses['4XX'];
  delete responses['5XX'];
  Object.assign(responses, errorResponses(errorsOf(e)));
  for (const [status, response] of Object.entries(responses) as [string, Json][]) {
    if (/^[24]/.test(status)) response.headers = { ...rateLimitHeaders, ...(response.headers as Json | undefined) };
  }
}

export async function registerOpenApi(app: FastifyInstance, version: string): Promise<void> {
  // The declarations of the routes, by operationId, to complete the generated document with.
  const declared = new Map<string, Endpoint>();
  app.addHook('onRoute', (route) => {
    const e = route.config?.endpoint;
    if (e) {
      if (declared.has(e.operationId) && declared.get(e.operationId) !== e)
        throw new Error(`two endpoints are named ${e.operationId}: operationIds must be unique`);
      declared.set(e.operationId, e);
    }
  });
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Engine Room API',
        version,
        description:
          'Accounts, catalog, orders, payments, ledger, messaging and webhooks. Errors are application/problem+json (RFC 9457) with a stable `code`.',
        contact: { name: 'Engine Room', url: 'https://engine-room.dev' },
        license: { name: 'MIT', identifier: 'MIT' },
      },
      // Relative: the document describes the server that serves it.
      servers: [
        {
          url: '/',
          description: 'The server that serves this document (local, staging or production alike)',
          'x-internal': false,
        } as { url: string },
      ],
      tags: Object.entries(tagDescriptions).map(([name, description]) => ({ name, description })),
      components: {
        securitySchemes: {
          bearerAuth: {
            type: 'http',
            scheme: 'bearer',
            description: 'A session token from /v1/auth/login or an API key',
          },
          sessionCookie: {
            type: 'apiKey',
            in: 'cookie',
            name: 'er_session',
            description: 'Browser session; unsafe requests also need X-CSRF-Token',
          },
        },
      },
    },
    transformObject: (generated) => {
      // A copy: the generated objects may share the very schemas Fastify validates with.
      const doc = JSON.parse(JSON.stringify((generated as { openapiObject: unknown }).openapiObject)) as Json & {
        paths: Record<string, Record<string, Json>>;
        components: Json;
      };
      doc.components.schemas = {
        ...(doc.components.schemas as Json | undefined),
        Problem: {
          ...JSON.parse(JSON.stringify(ProblemSchema)),
          properties: {
            ...JSON.parse(JSON.stringify(ProblemSchema.properties)),
            code: {
              type: 'string',
              enum: Object.keys(errorCatalog),
              description: 'Stable, machine-readable error code',
            },
          },
        },
      };
      for (const operations of Object.values(doc.paths)) {
        for (const operation of Object.values(operations)) {
          const e = declared.get(operation.operationId as string);
          if (e) completeOperation(operation, e);
        }
      }
      return doc;
    },
  });
  await app.register(async (docs) => {
    // swagger-ui's own routes (static files) are public; mark them so before they are added.
    docs.addHook('onRoute', (route) => {
      route.config = { ...route.config, access: 'public' };
    });
    await docs.register(swaggerUi, { routePrefix: '/docs', staticCSP: false });
  });
}
