import { it } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine } from './support/app.ts';
import { endpoints } from '../src/client.ts';

forEachEngine('HTTP conventions', 'one', (env) => {
  it('echoes a valid X-Request-Id and puts it on every log line of that request', async () => {
    const { app, logs } = env();
    const res = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'trace-abc.123' } });
    assert.equal(res.headers['x-request-id'], 'trace-abc.123');
    const lines = logs.map((l) => JSON.parse(l)).filter((l) => l.reqId === 'trace-abc.123');
    assert.ok(lines.length >= 2, 'the request and its completion are logged with the id');
    assert.ok(lines.some((l) => l.msg === 'request completed'));
  });

  it('replaces an invalid X-Request-Id with a fresh one', async () => {
    const res = await env().app.inject({
      method: 'GET',
      url: '/healthz',
      headers: { 'x-request-id': 'bad id with spaces' },
    });
    assert.match(String(res.headers['x-request-id']), /^[0-9a-f-]{36}$/);
  });

  it('answers an unknown route with a problem+json 404', async () => {
    const res = await env().app.inject({ method: 'GET', url: '/v1/nothing-here' });
    assert.equal(res.statusCode, 404);
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    assert.equal(res.json().code, 'not_found');
    assert.ok(res.headers['x-request-id']);
  });

  it('answers a wrong method with 405 and Allow', async () => {
    const res = await env().app.inject({ method: 'DELETE', url: '/v1/auth/login' });
    assert.equal(res.statusCode, 405);
    assert.equal(res.json().code, 'method_not_allowed');
    assert.equal(res.headers.allow, 'POST');
  });

  it('answers a path id over 100 characters with a problem+json 414 uri_too_long, declared for that operation', async () => {
    const { app } = env();
    const res = await app.inject({
      method: 'GET',
      url: `/v1/orders/${'x'.repeat(101)}`,
      headers: { authorization: `Bearer ${env().adminToken}` },
    });
    assert.equal(res.statusCode, 414);
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    assert.equal(res.json().code, 'uri_too_long');
    assert.equal(res.json().status, 414);
    assert.ok(res.headers['x-request-id']);
    const doc = app.swagger() as unknown as {
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
    };
    assert.match(JSON.stringify(doc.paths['/v1/orders/{id}']!.get!.responses['414']), /uri_too_long/);
    assert.equal(
      doc.paths['/v1/orders']!.get!.responses['414'],
      undefined,
      'only where a path parameter can be too long',
    );
  });

  it('answers a path that is not valid percent-encoding with a problem+json 400', async () => {
    const res = await env().app.inject({ method: 'GET', url: '/v1/orders/%E0%A4%A' });
    assert.equal(res.statusCode, 400);
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    assert.equal(res.json().code, 'bad_request');
  });

  it('answers a method the path does not have (QUERY without a body, PROPFIND) with 405 and the Allow of the path, and an unknown path with 404', async () => {
    const { app } = env();
    for (const method of ['QUERY', 'PROPFIND'] as const) {
      const res = await app.inject({ method: method as 'GET', url: '/v1/me' });
      assert.equal(res.statusCode, 405, `${method} /v1/me: ${res.body}`);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
      assert.equal(res.json().code, 'method_not_allowed');
      assert.equal(res.headers.allow, 'GET, HEAD');
    }
    const withBrokenBody = await app.inject({
      method: 'QUERY' as 'GET',
      url: '/v1/products',
      headers: { 'content-type': 'application/json' },
      payload: '{',
    });
    assert.equal(withBrokenBody.statusCode, 405);
    assert.deepEqual(String(withBrokenBody.headers.allow).split(', ').sort(), ['GET', 'HEAD', 'POST']);
    for (const method of ['QUERY', 'PROPFIND'] as const) {
      const res = await app.inject({ method: method as 'GET', url: '/v1/nothing-here' });
      assert.equal(res.statusCode, 404, `${method} /v1/nothing-here`);
      assert.equal(res.json().code, 'not_found');
    }
  });

  it('answers malformed JSON with 400', async () => {
    const res = await env().app.inject({
      method: 'POST',
      url: '/v1/auth/login',
      headers: { 'content-type': 'application/json' },
      payload: '{"email": ',
    });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().code, 'bad_request');
    assert.doesNotMatch(res.body, /SyntaxError|at JSON|Unexpected/);
  });

  it('answers a body over 1 MiB with 413', async () => {
    const big = JSON.stringify({ email: 'a@b.c', password: 'x'.repeat(1024 * 1024 + 10) });
    const res = await env().app.inject({
      method: 'POST',
      url: '/v1/auth/login',
      headers: { 'content-type': 'application/json' },
      payload: big,
    });
    assert.equal(res.statusCode, 413);
    assert.equal(res.json().code, 'payload_too_large');
  });

  it('answers a body that is not JSON with 415', async () => {
    const res = await env().app.inject({
      method: 'POST',
      url: '/v1/auth/login',
      headers: { 'content-type': 'text/plain' },
      payload: 'email=a',
    });
    assert.equal(res.statusCode, 415);
    assert.equal(res.json().code, 'unsupported_media_type');
  });

  it('answers a schema violation with 400 validation_failed and the paths at fault', async () => {
    const res = await env().client.call(endpoints.signup, {
      body: { email: 'not-an-email', password: 'short', name: '' },
    });
    assert.equal(res.status, 400);
    assert.ok(!res.ok);
    assert.equal(res.body.code, 'validation_failed');
    const paths = (res.body.errors ?? []).map((e) => e.path).sort();
    assert.deepEqual(paths, ['/email', '/name', '/password']);
  });

  it('names a missing field and an unknown field in errors', async () => {
    const res = await env().app.inject({
      method: 'POST',
      url: '/v1/auth/login',
      payload: { email: 'a@b.c', pasword: 'x' },
    });
    assert.equal(res.statusCode, 400);
    const paths = res
      .json()
      .errors.map((e: { path: string }) => e.path)
      .sort();
    assert.deepEqual(paths, ['/password', '/pasword']);
  });

  it('answers an unexpected fault with a plain 500 that reveals nothing, and logs the stack', async () => {
    const { app, database, logs } = env();
    await database.db.exec('ALTER TABLE sessions RENAME TO sessions_moved');
    try {
      const res = await app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: 'Bearer ers_whatever' } });
      assert.equal(res.statusCode, 500);
      assert.equal(res.json().code, 'internal');
      assert.doesNotMatch(res.body, /sessions|relation|SELECT|at /);
      const logged = logs.map((l) => JSON.parse(l)).find((l) => l.reqId === res.headers['x-request-id'] && l.err);
      assert.ok(logged?.err?.stack, 'the error is logged with its stack');
    } finally {
      await database.db.exec('ALTER TABLE sessions_moved RENAME TO sessions');
    }
  });

  it('sets security headers on every response', async () => {
    const res = await env().app.inject({ method: 'GET', url: '/v1/nothing-here' });
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    assert.match(String(res.headers['content-security-policy']), /default-src 'self'/);
    assert.ok(res.headers['strict-transport-security']);
    assert.equal(res.headers['x-frame-options'], 'SAMEORIGIN');
  });

  it('has CORS off by default', async () => {
    const res = await env().app.inject({
      method: 'OPTIONS',
      url: '/v1/me',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'GET' },
    });
    assert.equal(res.headers['access-control-allow-origin'], undefined);
  });
});

forEachEngine(
  'CORS when configured',
  'one',
  (env) => {
    it('allows a listed origin and no other', async () => {
      const { app } = env();
      const ok = await app.inject({
        method: 'OPTIONS',
        url: '/v1/me',
        headers: { origin: 'https://shop.example', 'access-control-request-method': 'GET' },
      });
      assert.equal(ok.headers['access-control-allow-origin'], 'https://shop.example');
      const other = await app.inject({ method: 'GET', url: '/healthz', headers: { origin: 'https://evil.example' } });
      assert.equal(other.headers['access-control-allow-origin'], undefined);
    });
  },
  { CORS_ORIGINS: 'https://shop.example' },
);
