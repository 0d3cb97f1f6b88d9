// The OpenAPI 3.1 document is generated from the route schemas (the same ones that validate
// requests and serialize responses), and /docs renders it with swagger-ui served from this process.
import type { FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { ProblemSchema } from './schemas.ts';

export async function registerOpenApi(app: FastifyInstance, version: string): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Engine Room API',
        version,
        description: 'Accounts, catalog, orders, payments, ledger, messaging and webhooks. Errors are application/problem+json (RFC 9457) with a stable `code`.',
      },
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', description: 'A session token from /v1/auth/login or an API key' },
          sessionCookie: { type: 'apiKey', in: 'cookie', name: 'er_session', description: 'Browser session; unsafe requests also need X-CSRF-Token' },
        },
      },
    },
    // Every route answers problem+json on error; say so once here rather than in every route.
    transform: ({ schema, url }) => {
      const response = { ...(schema?.response as object | undefined) } as Record<string, unknown>;
      response['4XX'] ??= { description: 'A problem with the request', content: { 'application/problem+json': { schema: ProblemSchema } } };
      response['5XX'] ??= { description: 'A fault of the server', content: { 'application/problem+json': { schema: ProblemSchema } } };
      return { schema: { ...schema, response }, url };
    },
  });
  await app.register(async (docs) => {
    // swagger-ui's own routes (static files) are public; mark them so before they are added.
    docs.addHook('onRoute', (route) => { route.config = { ...route.config, access: 'public' }; });
    await docs.register(swaggerUi, { routePrefix: '/docs', staticCSP: false });
  });
}
