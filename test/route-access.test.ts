// Authorization is one mechanism: every route declares `config.access`, and a route that declares
// nothing stops the start. These tests walk every route the real app registered, so a route added
// later is covered without anyone remembering to write a test for it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { forEachEngine } from './support/app.ts';
import { registerAuth, roles, type DeclaredRoute } from '../src/platform/auth.ts';

/** One request per method of a route, with ':param' and '*' filled in by dummies. */
function requestsFor(route: DeclaredRoute): { method: string; url: string; payload?: object }[] {
  const url = route.url.replace(/:[A-Za-z0-9_]+/g, 'xyz_dummy01').replace(/\*/g, 'dummy');
  return route.method.split(',').map((method) => ({
    method,
    url,
    // An empty body: the answer must be 401, not a validation failure that reveals the schema.
    ...(['POST', 'PUT', 'PATCH'].includes(method) ? { payload: {} } : {}),
  }));
}

function isValidAccess(access: DeclaredRoute['access']): boolean {
  if (access === 'public') return true;
  return (
    Array.isArray(access) && access.length > 0 && access.every((role) => (roles as readonly string[]).includes(role))
  );
}

forEachEngine('route access declarations', 'one', (env) => {
  it('every registered route declares who may call it', () => {
    const routes = env().app.declaredRoutes();
    // Not a vacuous walk: the routes of the operations and accounts modules are all there.
    assert.ok(routes.length >= 10, `only ${routes.length} routes seen`);
    assert.ok(routes.some((r) => r.url === '/v1/me'));
    const undeclared = routes
      .filter((r) => !isValidAccess(r.access))
      .map((r) => `${r.method} ${r.url}: ${JSON.stringify(r.access)}`);
    assert.deepEqual(undeclared, [], 'routes without a valid access declaration');
  });

  it('every non-public route answers 401 problem+json to a caller without a token', async () => {
    const { app } = env();
    const guarded = app.declaredRoutes().filter((r) => r.access !== 'public');
    assert.ok(guarded.length >= 5, `only ${guarded.length} non-public routes seen`);
    const wrong: string[] = [];
    for (const route of guarded) {
      for (const request of requestsFor(route)) {
        const res = await app.inject({
          method: request.method as 'GET',
          url: request.url,
          ...(request.payload ? { payload: request.payload } : {}),
        });
        const problemJson = /^application\/problem\+json/.test(String(res.headers['content-type']));
        // HEAD answers have no body to read the code from.
        const code = request.method === 'HEAD' ? 'unauthenticated' : (res.json() as { code?: string }).code;
        if (res.statusCode !== 401 || !problemJson || code !== 'unauthenticated') {
          wrong.push(
            `${request.method} ${request.url} (declared ${route.url}) answered ${res.statusCode} ${String(res.headers['content-type'])} ${res.body.slice(0, 80)}`,
          );
        }
      }
    }
    assert.deepEqual(wrong, [], 'non-public routes that did not answer 401 without a token');
  });

  it('every non-public route answers 401 to an unknown token', async () => {
    const { app } = env();
    const wrong: string[] = [];
    for (const route of app.declaredRoutes().filter((r) => r.access !== 'public')) {
      for (const request of requestsFor(route)) {
        for (const token of ['ers_unknown-session-token', 'erk_unknown-api-key', 'not-even-a-token']) {
          const res = await app.inject({
            method: request.method as 'GET',
            url: request.url,
            headers: { authorization: `Bearer ${token}` },
            ...(request.payload ? { payload: request.payload } : {}),
          });
          if (res.statusCode !== 401)
            wrong.push(`${request.method} ${request.url} with ${token} answered ${res.statusCode}`);
        }
      }
    }
    assert.deepEqual(wrong, []);
  });
});

describe('a route that declares no access', () => {
  it('stops the app from starting, naming the route', async () => {
    const app = Fastify({ logger: false });
    registerAuth(app, async () => null);
    app.get('/declared', { config: { access: 'public' } }, async () => ({ ok: true }));
    app.post('/forgotten', async () => ({ ok: true }));
    try {
      await assert.rejects(
        async () => {
          await app.ready();
        },
        (err: Error) => {
          assert.match(err.message, /POST \/forgotten/);
          assert.doesNotMatch(err.message, /\/declared/);
          return true;
        },
      );
    } finally {
      await app.close().catch(() => {});
    }
  });

  it('lets the app start when every route declares it', async () => {
    const app = Fastify({ logger: false });
    registerAuth(app, async () => null);
    app.get('/open', { config: { access: 'public' } }, async () => ({ ok: true }));
    app.get('/staff-only', { config: { access: ['staff', 'admin'] } }, async () => ({ ok: true }));
    await app.ready();
    assert.equal((await app.inject({ method: 'GET', url: '/open' })).statusCode, 200);
    assert.notEqual((await app.inject({ method: 'GET', url: '/staff-only' })).statusCode, 200);
    await app.close();
  });

  it('stops the start for a route registered inside a plugin too', async () => {
    const app = Fastify({ logger: false });
    registerAuth(app, async () => null);
    await app.register(async (plugin) => {
      plugin.delete('/v1/things/:id', async () => ({ ok: true }));
    });
    await assert.rejects(async () => {
      await app.ready();
    }, /DELETE \/v1\/things\/:id/);
    await app.close().catch(() => {});
  });
});
