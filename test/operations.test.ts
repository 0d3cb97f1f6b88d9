import { it } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine } from './support/app.ts';
import { freshDatabase } from './support/database.ts';
import { buildApp } from '../src/app.ts';
import type { Db } from '../src/platform/db.ts';

const quiet = { logStream: { write: () => {} } };

forEachEngine('operations endpoints', 'parity', (env) => {
  it('healthz says the process is alive', async () => {
    const res = await env().app.inject({ method: 'GET', url: '/healthz' });
    assert.equal(res.statusCode, 200);
    assert.equal(res.json().status, 'ok');
  });

  it('readyz is ready when the database answers and migrations are current, 503 when one is missing', async () => {
    const { app, database } = env();
    assert.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
    const [last] = await database.db.query<{ version: number; name: string }>(
      'SELECT version, name FROM schema_migrations ORDER BY version DESC LIMIT 1',
    );
    await database.db.query('DELETE FROM schema_migrations WHERE version = $1', [last!.version]);
    try {
      const res = await app.inject({ method: 'GET', url: '/readyz' });
      assert.equal(res.statusCode, 503);
      assert.equal(res.json().code, 'unavailable');
    } finally {
      await database.db.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [
        last!.version,
        last!.name,
      ]);
    }
  });

  // Liveness fails only where a restart is the cure: the embedded database lives in the process. A
  // PostgreSQL that is down is not cured by restarting every API process.
  const livenessWhenBroken = (engine: string) => (engine === 'pglite' ? 503 : 200);

  it('when every query fails, readiness answers 503, and liveness too on the embedded database', async () => {
    const { engine, database, config } = env();
    // As a PGlite that had run out of file descriptors: every query failed until a restart.
    const fail = async (): Promise<never> => {
      throw new Error('could not open file "base/5/1259": Too many open files');
    };
    const broken: Db = { ...database.db, query: fail, exec: fail, transaction: fail };
    const app = await buildApp(config, broken, quiet);
    try {
      const ready = await app.inject({ method: 'GET', url: '/readyz' });
      assert.equal(ready.statusCode, 503);
      assert.equal(ready.json().code, 'unavailable');
      const live = await app.inject({ method: 'GET', url: '/healthz' });
      assert.equal(live.statusCode, livenessWhenBroken(engine));
      if (live.statusCode === 503) assert.match(live.json().detail, /restart/);
    } finally {
      await app.close();
    }
  });

  it('a closed database (an embedded one, or a pool) makes readiness fail, and liveness on the embedded one', async () => {
    const { engine, config } = env();
    const database = await freshDatabase(engine);
    const app = await buildApp(config, database.db, quiet);
    try {
      assert.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
      assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
      await database.db.close();
      assert.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 503);
      assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, livenessWhenBroken(engine));
    } finally {
      await app.close();
      await database.drop().catch(() => {});
    }
  });

  it('metrics count requests by route pattern and status, with latency histograms and process metrics', async () => {
    const { app } = env();
    await app.inject({ method: 'GET', url: '/v1/api-keys/key_123' });
    await app.inject({ method: 'GET', url: '/healthz' });
    const res = await app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /text\/plain/);
    assert.match(res.body, /http_requests_total\{method="GET",route="\/healthz",status="200"\} \d+/);
    assert.match(
      res.body,
      /http_request_duration_seconds_bucket\{le="0.005",method="GET",route="\/healthz",status="200"\}/,
    );
    assert.match(res.body, /process_resident_memory_bytes \d+/);
  });

  it('serves an OpenAPI 3.1 document generated from the route schemas', async () => {
    const res = await env().app.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(res.statusCode, 200);
    const doc = res.json();
    assert.equal(doc.openapi, '3.1.0');
    const signup = doc.paths['/v1/auth/signup'].post;
    assert.deepEqual(signup.requestBody.content['application/json'].schema.required.sort(), [
      'email',
      'name',
      'password',
    ]);
    assert.ok(signup.responses['201']);
    assert.ok(signup.responses['400'].content['application/problem+json']);
    assert.ok(signup.responses['409'].content['application/problem+json'].examples.email_taken);
    assert.deepEqual(doc.paths['/v1/me'].get.security, [{ bearerAuth: [] }, { sessionCookie: [] }]);
    assert.deepEqual(doc.paths['/v1/auth/login'].post.security, [], 'public: no credential needed');
  });

  it('renders a readable reference at /docs from local files', async () => {
    const { app } = env();
    const page = await app.inject({ method: 'GET', url: '/docs/' });
    const html =
      page.statusCode === 302
        ? (await app.inject({ method: 'GET', url: String(page.headers.location) })).body
        : page.body;
    assert.match(html, /swagger-ui/i);
    assert.doesNotMatch(html, /https?:\/\/(cdn|unpkg|cdnjs)/);
    const bundle = await app.inject({ method: 'GET', url: '/docs/static/swagger-ui-bundle.js' });
    assert.equal(bundle.statusCode, 200);
  });
});
