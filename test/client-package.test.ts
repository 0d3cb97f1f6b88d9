// The published client, packages/client (@engine-room/client), against a real server: the typed
// methods, the idempotency keys it makes and keeps across its own retries, the retries of 429 and
// 503, the event stream with resume, and `npm pack` of the package installed into an application.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../src/platform/paths.ts';
import { ApiError, createClient, fetchTransport, type Transport } from '../packages/client/src/index.ts';
import { engines } from './support/database.ts';
import { startFreshServer, type RunningServer } from './support/engine-process.ts';
import { waitFor } from './support/wait.ts';

const admin = { email: 'admin@client.test', password: 'client-test-admin-password' };
const clientDir = join(packageRoot, 'packages', 'client');

for (const engine of engines('one')) {
  describe(`@engine-room/client against a real server [${engine}]`, () => {
    let server: RunningServer;
    let adminToken: string;
    before(async () => {
      server = await startFreshServer(engine, { ADMIN_EMAIL: admin.email, ADMIN_PASSWORD: admin.password });
      ({ token: adminToken } = await createClient({ baseUrl: server.baseUrl }).login({ body: admin }));
    });
    after(async () => {
      await server?.stop();
    });

    it('signs up, creates a product and places an order with typed methods, sending an Idempotency-Key it made', async () => {
      const sent: Record<string, string | undefined>[] = [];
      const api = createClient({
        baseUrl: server.baseUrl,
        fetch: (url, init) => {
          sent.push({ ...(init?.headers as Record<string, string>) });
          return fetch(url, init);
        },
      });
      const product = await api.createProduct({
        token: adminToken,
        body: { name: 'Mug', variants: [{ sku: 'CLIENT-MUG', price: { amount: 1200, currency: 'EUR' }, stock: 5 }] },
      });
      assert.equal(product.variants[0]!.available, 5);
      const { token } = await api.signup({
        body: { email: `buyer.${engine}@client.test`, password: 'correct horse battery staple', name: 'Buyer' },
      });
      const order = await api.placeOrder({
        token,
        body: { lines: [{ sku: 'CLIENT-MUG', quantity: 2 }], payment: { method: 'card', token: 'tok_ok' } },
      });
      assert.equal(order.status, 'pending_payment');
      assert.equal(order.total.amount, 2400);
      assert.match(sent.at(-1)!['idempotency-key'] ?? '', /^[0-9a-f-]{36}$/, 'a key was generated for the order');
      const paid = await waitFor('the order to be paid', async () => {
        const o = await api.getOrder({ token, params: { id: order.id } });
        return o.status === 'paid' ? o : undefined;
      });
      assert.equal(paid.id, order.id);
      assert.equal(sent.at(-1)!['idempotency-key'], undefined, 'no key where the operation takes none (GET)');
      // A business failure is an ApiError carrying the problem.
      await assert.rejects(
        api.placeOrder({
          token,
          body: { lines: [{ sku: 'CLIENT-MUG', quantity: 99 }], payment: { method: 'card', token: 'tok_ok' } },
        }),
        (err: unknown) => {
          assert.ok(err instanceof ApiError);
          assert.equal(err.status, 409);
          assert.equal(err.problem.code, 'out_of_stock');
          return true;
        },
      );
    });

    it('when the answer to an order is lost, its retry carries the same key and the server replays the one order', async () => {
      const { token } = await createClient({ baseUrl: server.baseUrl }).signup({
        body: { email: `lost.${engine}@client.test`, password: 'correct horse battery staple', name: 'Lost' },
      });
      const keys: string[] = [];
      let lose = true;
      const real = fetchTransport(server.baseUrl);
      // The request reaches the server and is done there; the answer never comes back (a timeout).
      const losing: Transport = async (request) => {
        const res = await real(request);
        if (request.method === 'POST') keys.push(request.headers['idempotency-key']!);
        if (lose && request.method === 'POST') {
          lose = false;
          throw new TypeError('fetch failed');
        }
        return res;
      };
      const api = createClient({ baseUrl: server.baseUrl, transport: losing, retry: { attempts: 3, maxDelayMs: 50 } });
      const result = await api.call('placeOrder', {
        token,
        body: { lines: [{ sku: 'CLIENT-MUG', quantity: 1 }], payment: { method: 'card', token: 'tok_ok' } },
      });
      assert.equal(result.status, 201);
      assert.equal(result.headers['idempotent-replayed'], 'true', 'the second attempt got the first answer');
      assert.equal(keys.length, 2);
      assert.equal(keys[0], keys[1]);
      const mine = await api.listOrders({ token });
      assert.equal(mine.data.length, 1, 'one order, not two');
    });

    it('reads the event stream, and resumes after a disconnect with what was missed', async () => {
      const api = createClient({ baseUrl: server.baseUrl });
      const { token } = await api.signup({
        body: { email: `stream.${engine}@client.test`, password: 'correct horse battery staple', name: 'Streamer' },
      });
      const first = new AbortController();
      const seen: { id?: string; event: string; data: unknown }[] = [];
      const reading = (async () => {
        for await (const e of api.events({ token, signal: first.signal })) {
          seen.push(e);
          if (e.event === 'message.created') first.abort();
        }
      })();
      await waitFor('the stream to be ready', async () => (seen.some((e) => e.event === 'ready') ? true : undefined));
      const conversation = await api.openConversation({ token, body: { subject: 'Hello', body: 'First message' } });
      await reading;
      const created = seen.find((e) => e.event === 'message.created')!;
      assert.ok(created.id?.startsWith('evt_'));

      await api.postMessage({
        token: adminToken,
        params: { id: conversation.id },
        body: { body: 'Missed while away' },
      });
      const second = new AbortController();
      const resumed: { id?: string; event: string; data: unknown }[] = [];
      for await (const e of api.events({ token, lastEventId: created.id!, signal: second.signal })) {
        resumed.push(e);
        if (resumed.some((r) => r.event === 'ready') && resumed.some((r) => r.event === 'message.created'))
          second.abort();
      }
      const missed = resumed.find((e) => e.event === 'message.created')!;
      assert.match(JSON.stringify(missed.data), /Missed while away/);
      // Replayed before ready, or (PostgreSQL, while an older transaction holds the horizon back) live after it.
      assert.equal((resumed.find((e) => e.event === 'ready')!.data as { resumed: boolean }).resumed, true);
    });

    it('npm pack builds a package that an application installs and calls, with its types', async () => {
      const app = await mkdtemp(join(tmpdir(), 'er-client-app-'));
      try {
        execFileSync('npm', ['pack', '--pack-destination', app, '--silent'], { cwd: clientDir, stdio: 'pipe' });
        const tarball = (await readdir(app)).find((f) => f.endsWith('.tgz'))!;
        const listing = execFileSync('tar', ['-tzf', join(app, tarball)], { encoding: 'utf8' })
          .split('\n')
          .filter(Boolean);
        assert.ok(
          listing.includes('package/dist/index.js') && listing.includes('package/dist/index.d.ts'),
          listing.join('\n'),
        );
        assert.ok(
          listing.every((f) => !f.endsWith('.ts') || f.endsWith('.d.ts')),
          'no TypeScript sources, only declarations',
        );
        await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'shop', private: true, type: 'module' }));
        execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--silent', join(app, tarball)], {
          cwd: app,
          stdio: 'pipe',
        });
        await writeFile(
          join(app, 'shop.ts'),
          [
            "import { createClient, ApiError, type Output } from '@engine-room/client';",
            '// No Node types: the package must type-check for a browser application too.',
            'declare const process: { argv: string[] };',
            'const api = createClient({ baseUrl: process.argv[2]! });',
            "const products: Output<'listProducts'> = await api.listProducts({ query: { limit: 5 } });",
            'const skus: string[] = products.data.flatMap((p) => p.variants.map((v) => v.sku));',
            'try { await api.me(); } catch (err) { if (err instanceof ApiError) console.log(err.problem.code); }',
            'console.log(skus.join(","));',
            '',
          ].join('\n'),
        );
        await writeFile(
          join(app, 'tsconfig.json'),
          JSON.stringify({
            compilerOptions: {
              module: 'nodenext',
              target: 'es2022',
              strict: true,
              noEmit: true,
              lib: ['es2022', 'dom'],
              types: [],
              skipLibCheck: false,
            },
          }),
        );
        // The application type-checks against the package's declarations (with the repository's tsc)...
        execFileSync(process.execPath, [join(packageRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app], {
          cwd: app,
          stdio: 'pipe',
        });
        // ...and runs, importing the package's built JavaScript.
        const out = execFileSync(process.execPath, [join(app, 'shop.ts'), server.baseUrl], {
          cwd: app,
          encoding: 'utf8',
        });
        assert.deepEqual(out.trim().split('\n'), ['unauthenticated', 'CLIENT-MUG']);
      } finally {
        await rm(app, { recursive: true, force: true });
      }
    });
  });
}

describe('@engine-room/client retries', () => {
  // A scripted server: each request gets the next answer, so the retry rules are seen exactly.
  async function scripted(answers: { status: number; headers?: Record<string, string> }[]) {
    const requests: http.IncomingHttpHeaders[] = [];
    const server = http.createServer((req, res) => {
      requests.push(req.headers);
      const a = answers[Math.min(requests.length, answers.length) - 1]!;
      const body =
        a.status >= 400
          ? JSON.stringify({
              type: 'about:blank',
              title: 'x',
              status: a.status,
              code: a.status === 429 ? 'rate_limited' : 'unavailable',
            })
          : JSON.stringify({ id: 'ok' });
      res
        .writeHead(a.status, {
          'content-type': a.status >= 400 ? 'application/problem+json' : 'application/json',
          ...a.headers,
        })
        .end(body);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return { baseUrl, requests, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
  }

  it('retries 503 and 429 after Retry-After, with the same Idempotency-Key, then answers', async () => {
    const s = await scripted([
      { status: 503, headers: { 'retry-after': '0' } },
      { status: 429, headers: { 'retry-after': '0' } },
      { status: 201 },
    ]);
    try {
      const api = createClient({ baseUrl: s.baseUrl });
      await api.placeOrder({
        token: 't',
        body: { lines: [{ sku: 'A', quantity: 1 }], payment: { method: 'card', token: 'tok_ok' } },
      });
      assert.equal(s.requests.length, 3);
      assert.equal(new Set(s.requests.map((h) => h['idempotency-key'])).size, 1);
    } finally {
      await s.close();
    }
  });

  it('does not wait longer than its bound, and does not repeat a keyless POST after a 503', async () => {
    const far = await scripted([{ status: 429, headers: { 'retry-after': '3600' } }, { status: 201 }]);
    const keyless = await scripted([{ status: 503, headers: { 'retry-after': '0' } }, { status: 200 }]);
    try {
      const result = await createClient({ baseUrl: far.baseUrl }).call('listProducts');
      assert.equal(result.status, 429, 'an hour is beyond the bound: the answer is returned');
      assert.equal(far.requests.length, 1);
      await assert.rejects(
        createClient({ baseUrl: keyless.baseUrl }).login({ body: { email: 'a@b.c', password: 'x' } }),
        ApiError,
      );
      assert.equal(keyless.requests.length, 1, 'login takes no key: a 503 might have done it, so it is not sent again');
    } finally {
      await far.close();
      await keyless.close();
    }
  });

  it('the event stream reconnects by itself with Last-Event-ID', async () => {
    const seenIds: (string | undefined)[] = [];
    const server = http.createServer((req, res) => {
      seenIds.push(req.headers['last-event-id'] as string | undefined);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const n = seenIds.length;
      res.end(`retry: 10\n\nid: evt_${n}\nevent: order.paid\ndata: {"n":${n}}\n\n`);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const api = createClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
      const stop = new AbortController();
      const got: unknown[] = [];
      for await (const e of api.events({ token: 't', signal: stop.signal })) {
        got.push(e.data);
        if (got.length === 2) stop.abort();
      }
      assert.deepEqual(got, [{ n: 1 }, { n: 2 }]);
      assert.deepEqual(seenIds, [undefined, 'evt_1']);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
