// The operations API behind the console: who may see and do what, figures that follow what
// happens (orders, charges, requests, processes), dead letters that are really made by an outage
// and sent back under an Idempotency-Key, recorded audit runs, /metrics/system, and the session
// endpoint a reloaded page uses. Each through the real app on both engines, with workers.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { forEachEngine, type TestEnv } from './support/app.ts';
import { waitFor } from './support/wait.ts';
import { endpoints } from '../src/client.ts';
import { consoleRoutes } from '../src/modules/console/routes.ts';

async function staff(env: TestEnv): Promise<string> {
  const user = await env.customer('Stella Staff');
  await env.client.ok(endpoints.updateUser, {
    token: env.adminToken,
    params: { id: user.id },
    body: { role: 'staff' },
  });
  return user.token;
}

function overview(env: TestEnv, token = env.adminToken) {
  return env.client.ok(endpoints.operationsOverview, { token, query: { window: 900 } });
}

let orderKey = 0;
function placeOrder(env: TestEnv, token: string, sku: string, card: string) {
  return env.client.ok(endpoints.placeOrder, {
    token,
    idempotencyKey: `ops-${++orderKey}`,
    body: { lines: [{ sku, quantity: 1 }], payment: { method: 'card', token: card } },
  });
}

forEachEngine(
  'the operations API',
  'one',
  (env) => {
    it('shows the overview to staff and admins, and nothing to a customer or an anonymous caller', async () => {
      const e = env();
      const customer = await e.customer();
      const staffToken = await staff(e);
      assert.equal((await e.client.call(endpoints.operationsOverview, { query: { window: 900 } })).status, 401);
      const refused = await e.client.call(endpoints.operationsOverview, {
        token: customer.token,
        query: { window: 900 },
      });
      assert.equal(refused.status, 403);
      assert.equal((refused.body as { code: string }).code, 'forbidden');
      assert.equal(
        (await e.client.call(endpoints.operationsOverview, { token: staffToken, query: { window: 900 } })).status,
        200,
      );
      // Least privilege: dead letters, audit runs and the outage switch are admin-only.
      assert.equal((await e.client.call(endpoints.listFailedJobs, { token: staffToken, query: {} })).status, 403);
      assert.equal((await e.client.call(endpoints.runAudit, { token: staffToken })).status, 403);
      assert.equal(
        (await e.client.call(endpoints.startSandboxOutage, { token: staffToken, body: { seconds: 5 } })).status,
        403,
      );
      assert.equal((await e.client.call(endpoints.getSandboxOutage, { token: staffToken })).status, 200);
      // A window outside 1 minute to 24 hours is a 400, not a slow query.
      assert.equal(
        (await e.client.call(endpoints.operationsOverview, { token: staffToken, query: { window: 86_401 } })).status,
        400,
      );
    });

    it('counts orders, payments, charges and requests of the whole system, and lists this process', async () => {
      const e = env();
      await e.product([{ sku: 'OPS-A', stock: 100, amount: 1250 }]);
      const buyer = await e.customer();
      const before = await overview(e);
      for (let i = 0; i < 3; i++) await placeOrder(e, buyer.token, 'OPS-A', 'tok_ok');
      await placeOrder(e, buyer.token, 'OPS-A', 'tok_declined');
      const after = await waitFor('the orders to show in the overview', async () => {
        const o = await overview(e);
        return o.orders.placed - before.orders.placed >= 4 &&
          o.orders.paid - before.orders.paid >= 3 &&
          o.orders.paymentFailed - before.orders.paymentFailed >= 1 &&
          o.charges.succeeded - before.charges.succeeded >= 3 &&
          o.charges.declined - before.charges.declined >= 1 &&
          o.traffic.requests > before.traffic.requests
          ? o
          : undefined;
      });
      assert.equal(after.orders.placed - before.orders.placed, 4);
      assert.equal(after.charges.declined - before.charges.declined, 1);
      assert.deepEqual(
        after.orders.paidAmounts.find((m) => m.currency === 'EUR'),
        {
          currency: 'EUR',
          amount: (before.orders.paidAmounts.find((m) => m.currency === 'EUR')?.amount ?? 0) + 3 * 1250,
        },
      );
      assert.ok(after.orders.placedPerMinute.length === after.window.times.length);
      assert.equal(after.window.stepSeconds, 10);
      assert.ok(after.traffic.latencyMs.p50 !== null);
      const me = after.processes.find((p) => p.pid === process.pid);
      assert.ok(me, 'this process reports itself');
      assert.deepEqual(me.roles, ['api', 'worker']);
      assert.equal(after.database.engine, e.engine);
      if (e.engine === 'postgres') assert.ok(me.pool && me.pool.size > 0);
      const charge = after.queues.find((q) => q.name === 'payments.charge');
      assert.ok(charge, 'the charge queue is listed');
      assert.ok(!after.queues.some((q) => q.name.endsWith('.dead-letter') || q.name.startsWith('__pgboss')));
    });

    it('lists the routes with the most errors, with their problem codes', async () => {
      const e = env();
      for (let i = 0; i < 3; i++)
        await e.app.inject({
          method: 'GET',
          url: '/v1/orders/ord_nope',
          headers: { authorization: `Bearer ${e.adminToken}` },
        });
      const o = await waitFor('the 404s to show', async () => {
        const x = await overview(e);
        return x.traffic.topErrors.some(
          (t) => t.route === 'GET /v1/orders/:id' && t.status === 404 && t.code === 'not_found' && t.count >= 3,
        )
          ? x
          : undefined;
      });
      assert.ok(o.traffic.errors4xx >= 3);
      assert.ok(o.traffic.errorRate4xx > 0);
    });

    it("an outage dead-letters the drill card's charges for real; an admin sends them back once, under an Idempotency-Key", async () => {
      const e = env();
      await e.product([{ sku: 'OPS-DRILL', stock: 50 }]);
      const buyer = await e.customer();
      const started = await e.client.ok(endpoints.startSandboxOutage, { token: e.adminToken, body: { seconds: 120 } });
      assert.equal(started.active, true);
      const order = await placeOrder(e, buyer.token, 'OPS-DRILL', 'tok_drill');
      const dead = await waitFor('the charge to be dead-lettered', async () => {
        const page = await e.client.ok(endpoints.listFailedJobs, {
          token: e.adminToken,
          query: { queue: 'payments.charge' },
        });
        return page.data[0];
      });
      assert.match(dead.error, /outage/);
      assert.equal(dead.attempts, 3, 'the drill card gives up after 3 attempts');
      const o = await overview(e);
      assert.equal(o.queues.find((q) => q.name === 'payments.charge')?.deadLetters, 1);
      assert.ok(o.sandbox?.outageUntil);
      await waitFor('the exhausted charge to be counted', async () =>
        (await overview(e)).charges.failed >= 1 ? true : undefined,
      );
      assert.equal(
        (await e.client.ok(endpoints.getOrder, { token: buyer.token, params: { id: order.id } })).status,
        'pending_payment',
      );

      await e.client.ok(endpoints.endSandboxOutage, { token: e.adminToken });
      const first = await e.client.call(endpoints.retryFailedJob, {
        token: e.adminToken,
        params: { id: dead.id },
        idempotencyKey: 'retry-dead-1',
      });
      assert.equal(first.status, 202);
      const again = await e.client.call(endpoints.retryFailedJob, {
        token: e.adminToken,
        params: { id: dead.id },
        idempotencyKey: 'retry-dead-1',
      });
      assert.equal(again.status, 202);
      assert.equal(again.headers['idempotent-replayed'], 'true');
      assert.deepEqual(again.body, first.body);
      // Without the key, the job is no longer a dead letter.
      assert.equal(
        (await e.client.call(endpoints.retryFailedJob, { token: e.adminToken, params: { id: dead.id } })).status,
        404,
      );
      const newId = (first.body as { id: string }).id;
      e.queue?.wake('payments.charge');
      const job = await waitFor('the retried job to complete', async () => {
        const j = await e.client.ok(endpoints.getJob, {
          token: e.adminToken,
          params: { id: newId },
          query: { queue: 'payments.charge' },
        });
        return j.state === 'completed' ? j : undefined;
      });
      assert.equal(job.queue, 'payments.charge');
      assert.equal(
        (await e.client.ok(endpoints.getOrder, { token: buyer.token, params: { id: order.id } })).status,
        'paid',
      );
      assert.equal((await e.client.ok(endpoints.runAudit, { token: e.adminToken })).ok, true);
    });

    it('sends every dead letter of a queue back at once, and needs an Idempotency-Key for it', async () => {
      const e = env();
      await e.product([{ sku: 'OPS-ALL', stock: 50 }]);
      const buyer = await e.customer();
      await e.client.ok(endpoints.startSandboxOutage, { token: e.adminToken, body: { seconds: 120 } });
      const orders = [];
      for (let i = 0; i < 3; i++) orders.push(await placeOrder(e, buyer.token, 'OPS-ALL', 'tok_drill'));
      await waitFor('three dead letters', async () => {
        const page = await e.client.ok(endpoints.listFailedJobs, {
          token: e.adminToken,
          query: { queue: 'payments.charge', limit: 100 },
        });
        return page.data.length >= 3 ? true : undefined;
      });
      // Pages of one follow each other without repeats.
      const p1 = await e.client.ok(endpoints.listFailedJobs, {
        token: e.adminToken,
        query: { queue: 'payments.charge', limit: 1 },
      });
      assert.ok(p1.nextCursor);
      const p2 = await e.client.ok(endpoints.listFailedJobs, {
        token: e.adminToken,
        query: { queue: 'payments.charge', limit: 1, cursor: p1.nextCursor },
      });
      assert.notEqual(p2.data[0]!.id, p1.data[0]!.id);
      assert.equal(
        (await e.client.call(endpoints.listFailedJobs, { token: e.adminToken, query: { cursor: 'not-a-cursor' } }))
          .status,
        400,
      );

      await e.client.ok(endpoints.endSandboxOutage, { token: e.adminToken });
      const keyless = await e.client.call(endpoints.retryAllFailedJobs, {
        token: e.adminToken,
        body: { queue: 'payments.charge' },
      });
      assert.equal(keyless.status, 400);
      assert.equal((keyless.body as { code: string }).code, 'idempotency_key_required');
      // Two operators at once with one key: one retry happens, the other replays it.
      const [a, b] = await Promise.all([
        e.client.call(endpoints.retryAllFailedJobs, {
          token: e.adminToken,
          body: { queue: 'payments.charge' },
          idempotencyKey: 'all-1',
        }),
        e.client.call(endpoints.retryAllFailedJobs, {
          token: e.adminToken,
          body: { queue: 'payments.charge' },
          idempotencyKey: 'all-1',
        }),
      ]);
      assert.deepEqual(a.body, b.body);
      assert.ok((a.body as { retried: number }).retried >= 3);
      const left = await e.client.ok(endpoints.listFailedJobs, {
        token: e.adminToken,
        query: { queue: 'payments.charge' },
      });
      assert.equal(left.data.length, 0);
      // Sent back once: each order is paid, by one charge.
      e.queue?.wake('payments.charge');
      for (const order of orders) {
        await waitFor('the order to be paid', async () =>
          (await e.client.ok(endpoints.getOrder, { token: buyer.token, params: { id: order.id } })).status === 'paid'
            ? true
            : undefined,
        );
      }
    });

    it('records audit runs; /metrics/system shows the domain series once for the whole system', async () => {
      const e = env();
      const run = await e.client.ok(endpoints.runAudit, { token: e.adminToken });
      assert.equal(run.ok, true);
      assert.ok(run.checks.length >= 7);
      assert.equal((await e.client.ok(endpoints.lastAuditRun, { token: e.adminToken })).id, run.id);
      const o = await overview(e);
      assert.equal(o.audit?.ok, true);
      await waitFor('order totals to reach the system metrics', async () =>
        (await overview(e)).orders.placed > 0 ? true : undefined,
      );
      const system = await e.app.inject({ method: 'GET', url: '/metrics/system' });
      assert.equal(system.statusCode, 200);
      assert.match(system.body, /^engine_room_audit_ok 1$/m);
      assert.match(system.body, /^engine_room_orders_total\{event="created",currency="EUR"\} \d+$/m);
      assert.match(system.body, /^engine_room_charges_total\{outcome="succeeded",currency="EUR"\} \d+$/m);
      assert.match(system.body, /^engine_room_jobs\{queue="payments.charge",state="dead_lettered"\} \d+$/m);
      assert.match(system.body, /^engine_room_job_lag_seconds\{queue="payments.charge"\} [\d.]+$/m);
      assert.match(system.body, /^engine_room_processes\{role="api"\} [1-9]/m);
      assert.match(system.body, /^# TYPE engine_room_webhook_deliveries_total counter$/m);
      // /metrics stays this process's own: summing it across processes counts nothing twice.
      const own = await e.app.inject({ method: 'GET', url: '/metrics' });
      assert.doesNotMatch(own.body, /engine_room_orders_total/);
      if (e.engine === 'postgres') assert.match(own.body, /^engine_room_db_pool_connections\{state="in_use"\} \d+$/m);
    });

    it('tells a page who is signed in and its CSRF token, and an anonymous page that nobody is, without an error', async () => {
      const e = env();
      const anonymous = await e.client.call(endpoints.session, {});
      assert.equal(anonymous.status, 200);
      assert.deepEqual(anonymous.body, { user: null, csrfToken: null });
      const login = await e.client.ok(endpoints.login, {
        body: { email: 'admin@test.example', password: 'admin-test-password-1' },
      });
      const viaCookie = await e.app.inject({
        method: 'GET',
        url: '/v1/auth/session',
        cookies: { er_session: login.token },
      });
      assert.equal(viaCookie.statusCode, 200);
      assert.equal(viaCookie.json().csrfToken, login.csrfToken);
      assert.equal(viaCookie.json().user.role, 'admin');
      const unknown = await e.app.inject({
        method: 'GET',
        url: '/v1/auth/session',
        cookies: { er_session: 'ers_unknown' },
      });
      assert.deepEqual(unknown.json(), { user: null, csrfToken: null });
    });

    it('serves the console page with a strict CSP and its files hashed, cached for a year and gzipped', async () => {
      const { app } = env();
      const page = await app.inject({ method: 'GET', url: '/console/somewhere/deep' });
      assert.equal(page.statusCode, 200);
      assert.match(String(page.headers['content-security-policy']), /script-src 'self'/);
      assert.equal(page.headers['cache-control'], 'no-cache');
      assert.doesNotMatch(page.body, /<script>/, 'no inline script');
      const js = /src="(\/console\/assets\/main-[A-Z0-9]+\.js)"/.exec(page.body)?.[1];
      assert.ok(js, 'the page names its hashed script');
      const asset = await app.inject({ method: 'GET', url: js, headers: { 'accept-encoding': 'gzip, br' } });
      assert.equal(asset.statusCode, 200);
      assert.equal(asset.headers['content-encoding'], 'gzip');
      assert.match(String(asset.headers['cache-control']), /max-age=31536000, immutable/);
      assert.equal((await app.inject({ method: 'GET', url: '/console/assets/main-NOPE.js' })).statusCode, 404);
    });
  },
  {},
  { workers: true },
);

it('answers a clear page when the console was not built', async () => {
  const app = Fastify();
  await consoleRoutes(app, { dir: '/nonexistent/console-dist' });
  const res = await app.inject({ method: 'GET', url: '/console' });
  assert.equal(res.statusCode, 503);
  assert.match(res.body, /npm run build:console/);
  await app.close();
});
