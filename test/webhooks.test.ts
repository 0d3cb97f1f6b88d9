// Webhooks on both engines, through the HTTP API, the real queue and a real receiver over HTTP:
// endpoints and their validation, signed deliveries that verify with the secret, retries that end
// in the same event id, a dispatcher that reads the same events twice making one delivery,
// redirects and timeouts as failures, an endpoint disabled after failing past the window, and
// manual redelivery. Then the dispatcher on its own: an endpoint gets only the events published
// after it existed; events committed out of id order, and events read by dispatchers running at
// once, are each fanned out exactly once; a failing dispatcher reports and carries on.
import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { engines, freshDatabase, type TestDatabase } from './support/database.ts';
import { startTestEnv, type TestEnv } from './support/app.ts';
import { startWebhookReceiver, type ReceivedRequest, type WebhookReceiver } from './support/webhook-receiver.ts';
import { publishEvent, type PublishedEvent } from '../src/platform/events.ts';
import { declareQueues, startQueue, type Job, type Queue } from '../src/platform/queue.ts';
import type { Db, Queryable } from '../src/platform/db.ts';
import {
  deliver,
  deliverQueue,
  dispatchWebhookEvents,
  registerWebhookWorkers,
  webhookQueuesFor,
  type WebhookOptions,
} from '../src/modules/webhooks/delivery.ts';
import { createEndpoint as createEndpointRow, type DeliverJob } from '../src/modules/webhooks/service.ts';
import type { Resolve } from '../src/modules/webhooks/destination.ts';
import * as s from '../src/modules/webhooks/schemas.ts';

// A short backoff, so that a retry comes within seconds; the disabling window stays the default
// (3 days) and the test moves the failure streak's start back instead of waiting. The request
// timeout stays the default (10 s) too: a short one made an answer that a busy machine was slow to
// read count as a failure. The receivers listen on 127.0.0.1, hence allowPrivateUrls.
const options: WebhookOptions = { retryDelaySeconds: 1, retryLimit: 3, concurrency: 4, allowPrivateUrls: true };
const allowPrivate = { WEBHOOK_ALLOW_PRIVATE_URLS: 'true' };

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false | null> | T | undefined | false | null,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(50);
  }
}

/** What a receiver does: recompute the HMAC over the raw body with the secret, compare in constant time. */
function verify(request: ReceivedRequest, secret: string): { timestamp: number } {
  const header = String(request.headers['engine-room-signature'] ?? '');
  const parts = Object.fromEntries(header.split(',').map((p) => p.split('=', 2) as [string, string]));
  assert.match(parts.t ?? '', /^\d+$/, `signature header without t: ${header}`);
  assert.match(parts.v1 ?? '', /^[0-9a-f]{64}$/, `signature header without v1: ${header}`);
  const expected = createHmac('sha256', secret).update(`${parts.t}.${request.body}`).digest();
  assert.ok(timingSafeEqual(Buffer.from(parts.v1!, 'hex'), expected), 'the signature does not verify');
  return { timestamp: Number(parts.t) };
}

/** Whether the dispatcher's position has passed this event. */
async function dispatched(db: Queryable, eventId: string): Promise<boolean> {
  const [row] = await db.query<{ passed: boolean }>(
    'SELECT (c.tx, c.id) >= (e.tx, e.id) AS passed FROM webhook_dispatch_cursor c, events e WHERE e.id = $1',
    [eventId],
  );
  return row?.passed ?? false;
}

/** The delivery jobs enqueued, as "endpoint event round" strings, sorted. */
async function deliveryJobs(db: Queryable): Promise<string[]> {
  const rows = await db.query<{ job: string }>(
    `SELECT concat_ws(' ', data->>'endpointId', data->>'eventId', data->>'round') AS job FROM pgboss.job WHERE name = $1 ORDER BY 1`,
    [deliverQueue],
  );
  return rows.map((r) => r.job);
}

/** The delivery job made for an event (one endpoint), to run by hand with deliver(). */
async function deliveryJobOf(db: Queryable, eventId: string): Promise<Job<DeliverJob>> {
  const [job] = await db.query<{ id: string; data: DeliverJob }>(
    "SELECT id, data FROM pgboss.job WHERE name = $1 AND data->>'eventId' = $2",
    [deliverQueue, eventId],
  );
  assert.ok(job, `no delivery job for ${eventId}`);
  return { id: job.id, name: deliverQueue, data: job.data, attempt: 1, signal: new AbortController().signal };
}

/** A full garbage collection, on demand (what --expose-gc gives, without the flag). */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

for (const engine of engines('one')) {
  describe(`webhooks [${engine}]`, () => {
    let env: TestEnv;
    let queue: Queue;
    const receivers: WebhookReceiver[] = [];

    before(async () => {
      env = await startTestEnv(engine, allowPrivate);
      const db = env.database.db;
      await declareQueues(db, webhookQueuesFor(options));
      queue = await startQueue(db, { pollingIntervalSeconds: 0.05, maintain: false, runSchedules: false });
      registerWebhookWorkers(queue, db, options);
    });
    after(async () => {
      await queue?.stop();
      for (const r of receivers) await r.close();
      await env?.close();
    });
    // Each test has its own endpoints and receivers; an endpoint left behind would keep getting events.
    afterEach(async () => {
      await env.database.db.query('DELETE FROM webhook_endpoints');
      for (const r of receivers.splice(0)) await r.close();
    });

    const receiver = async () => {
      const r = await startWebhookReceiver();
      receivers.push(r);
      return r;
    };

    const inject = async (
      method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
      url: string,
      body?: unknown,
      token = env.adminToken,
    ) => {
      const res = await env.app.inject({
        method,
        url,
        headers: { authorization: `Bearer ${token}` },
        ...(body !== undefined ? { payload: body as object } : {}),
      });
      return { status: res.statusCode, type: String(res.headers['content-type']), body: res.body ? res.json() : null };
    };

    const createEndpoint = (url: string, events: string[]) =>
      env.client.ok(s.createWebhookEndpoint, {
        token: env.adminToken,
        body: { url, events: events as s.WebhookEventType[] },
      });
    const getEndpoint = (id: string) => env.client.ok(s.getWebhookEndpoint, { token: env.adminToken, params: { id } });
    const attemptsOf = async (id: string, eventId?: string) =>
      (
        await env.client.ok(s.listDeliveryAttempts, {
          token: env.adminToken,
          params: { id },
          query: { limit: 100, ...(eventId ? { eventId } : {}) },
        })
      ).data;

    // The commit wakes this process's dispatcher (no queue.wake needed).
    const publish = (type: string, data: object = { order: { id: 'ord_test' } }) =>
      env.database.db.transaction((tx) => publishEvent(tx, type, data, []));
    const jobStates = async (name: string, eventId: string, endpointId?: string) =>
      (
        await env.database.db.query<{ state: string }>(
          `SELECT state::text FROM pgboss.job WHERE name = $1 AND data->>'eventId' = $2 AND ($3::text IS NULL OR data->>'endpointId' = $3)`,
          [name, eventId, endpointId ?? null],
        )
      ).map((r) => r.state);
    const fannedOut = (eventId: string) =>
      waitFor(`the dispatcher to pass ${eventId}`, () => dispatched(env.database.db, eventId));
    const deliveriesOf = async (eventId: string) =>
      env.database.db.query<{ endpoint_id: string; status: string }>(
        'SELECT endpoint_id, status FROM webhook_deliveries WHERE event_id = $1 ORDER BY endpoint_id',
        [eventId],
      );

    it('an admin registers, reads, lists, changes and deletes an endpoint; the secret is shown only at creation and never logged', async () => {
      const created = await createEndpoint('https://hooks.example.com/engine-room', ['order.paid', 'order.cancelled']);
      assert.match(created.id, /^whe_[0-9a-z]{26}$/);
      assert.match(created.secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
      assert.deepEqual(
        {
          url: created.url,
          events: created.events,
          enabled: created.enabled,
          disabledReason: created.disabledReason,
          disabledAt: created.disabledAt,
          failingSince: created.failingSince,
        },
        {
          url: 'https://hooks.example.com/engine-room',
          events: ['order.paid', 'order.cancelled'],
          enabled: true,
          disabledReason: null,
          disabledAt: null,
          failingSince: null,
        },
      );

      const read = await inject('GET', `/v1/webhook-endpoints/${created.id}`);
      assert.equal(read.status, 200);
      assert.equal(read.body.secret, undefined);
      assert.ok(!JSON.stringify(read.body).includes(created.secret));

      const other = await createEndpoint('http://127.0.0.1:9/other', ['*']);
      const first = await env.client.ok(s.listWebhookEndpoints, { token: env.adminToken, query: { limit: 1 } });
      assert.deepEqual(
        first.data.map((e) => e.id),
        [other.id],
        'newest first',
      );
      assert.ok(first.nextCursor);
      const second = await env.client.ok(s.listWebhookEndpoints, {
        token: env.adminToken,
        query: { limit: 1, cursor: first.nextCursor! },
      });
      assert.deepEqual(
        second.data.map((e) => e.id),
        [created.id],
      );
      assert.equal(second.nextCursor, null);
      assert.ok(!JSON.stringify([first, second]).includes('whsec_'));

      const changed = await env.client.ok(s.updateWebhookEndpoint, {
        token: env.adminToken,
        params: { id: created.id },
        body: { url: 'https://hooks.example.com/v2', events: ['order.created'] },
      });
      assert.deepEqual(
        [changed.url, changed.events, changed.enabled],
        ['https://hooks.example.com/v2', ['order.created'], true],
      );

      const off = await env.client.ok(s.updateWebhookEndpoint, {
        token: env.adminToken,
        params: { id: created.id },
        body: { enabled: false },
      });
      assert.equal(off.enabled, false);
      assert.equal(off.disabledReason, 'Disabled by an administrator');
      assert.ok(off.disabledAt);
      const on = await env.client.ok(s.updateWebhookEndpoint, {
        token: env.adminToken,
        params: { id: created.id },
        body: { enabled: true },
      });
      assert.deepEqual([on.enabled, on.disabledReason, on.disabledAt], [true, null, null]);

      assert.equal((await inject('DELETE', `/v1/webhook-endpoints/${created.id}`)).status, 204);
      const gone = await inject('GET', `/v1/webhook-endpoints/${created.id}`);
      assert.equal(gone.status, 404);
      assert.equal(gone.body.code, 'not_found');
      assert.equal((await inject('DELETE', `/v1/webhook-endpoints/${created.id}`)).status, 404);
      assert.equal((await inject('GET', `/v1/webhook-endpoints/${created.id}/deliveries`)).status, 404);

      assert.ok(!env.logs.join('\n').includes(created.secret), 'the secret appears in a log line');
    });

    it('a URL that is not http(s) or an event list that is empty, unknown or mixes "*" answers 400 validation_failed', async () => {
      const bad: [object, string][] = [
        [{ url: 'ftp://hooks.example.com/x', events: ['order.paid'] }, '/url'],
        [{ url: 'javascript:alert(1)', events: ['order.paid'] }, '/url'],
        [{ url: 'not a url', events: ['order.paid'] }, '/url'],
        [{ url: 'file:///etc/passwd', events: ['order.paid'] }, '/url'],
        [{ url: 'https://hooks.example.com', events: [] }, '/events'],
        [{ url: 'https://hooks.example.com', events: ['order.shipped'] }, '/events/0'],
        [{ url: 'https://hooks.example.com', events: ['*', 'order.paid'] }, '/events'],
        [{ url: 'https://hooks.example.com', events: ['order.paid', 'order.paid'] }, '/events'],
        [{ url: 'https://hooks.example.com' }, '/events'],
        [{ url: 'https://hooks.example.com', events: ['order.paid'], secret: 'mine' }, '/secret'],
      ];
      for (const [body, path] of bad) {
        const res = await inject('POST', '/v1/webhook-endpoints', body);
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.match(res.type, /^application\/problem\+json/);
        assert.equal(res.body.code, 'validation_failed');
        assert.ok(
          res.body.errors.some((e: { path: string }) => e.path === path),
          `${JSON.stringify(body)}: ${JSON.stringify(res.body.errors)}`,
        );
      }
      const { id } = await createEndpoint('https://hooks.example.com', ['order.paid']);
      for (const body of [{}, { url: 'gopher://hooks.example.com' }, { events: [] }, { enabled: 'yes' }]) {
        const res = await inject('PATCH', `/v1/webhook-endpoints/${id}`, body);
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.equal(res.body.code, 'validation_failed');
      }
      assert.equal((await getEndpoint(id)).url, 'https://hooks.example.com');
    });

    it('only admins manage webhooks: a customer gets 403 on every webhook route', async () => {
      const customer = await env.customer();
      const { id } = await createEndpoint('https://hooks.example.com', ['order.paid']);
      const event = await publish('order.created');
      const calls: ['GET' | 'POST' | 'PATCH' | 'DELETE', string, unknown?][] = [
        ['POST', '/v1/webhook-endpoints', { url: 'https://evil.example.com', events: ['*'] }],
        ['GET', '/v1/webhook-endpoints'],
        ['GET', `/v1/webhook-endpoints/${id}`],
        ['PATCH', `/v1/webhook-endpoints/${id}`, { url: 'https://evil.example.com' }],
        ['DELETE', `/v1/webhook-endpoints/${id}`],
        ['GET', `/v1/webhook-endpoints/${id}/deliveries`],
        ['POST', `/v1/webhook-endpoints/${id}/deliveries/${event.id}/redeliver`],
      ];
      for (const [method, url, body] of calls) {
        const res = await inject(method, url, body, customer.token);
        assert.equal(res.status, 403, `${method} ${url}`);
        assert.equal(res.body.code, 'forbidden');
      }
      assert.equal((await getEndpoint(id)).url, 'https://hooks.example.com');
    });

    it('a delivery is a POST of exactly { id, type, createdAt, data } whose signature verifies with the secret', async () => {
      const r = await receiver();
      const endpoint = await createEndpoint(r.url, ['order.paid']);
      const event = await publish('order.paid', { order: { id: 'ord_1', total: { amount: 1999, currency: 'EUR' } } });
      const [request] = await r.waitForRequests(1);
      assert.equal(request!.method, 'POST');
      assert.equal(request!.path, '/hooks');
      assert.match(String(request!.headers['content-type']), /^application\/json/);
      assert.equal(request!.headers['engine-room-event-id'], event.id);
      const body = JSON.parse(request!.body);
      assert.deepEqual(body, {
        id: event.id,
        type: 'order.paid',
        createdAt: event.createdAt,
        data: { order: { id: 'ord_1', total: { amount: 1999, currency: 'EUR' } } },
      });
      assert.deepEqual(Object.keys(body), ['id', 'type', 'createdAt', 'data']);

      const { timestamp } = verify(request!, endpoint.secret);
      // The replay check a receiver makes: the timestamp is now, give or take a clock's skew.
      assert.ok(Math.abs(timestamp - Date.now() / 1000) < 300, `timestamp ${timestamp}`);
      // A wrong secret or a changed body does not verify.
      assert.throws(() => verify(request!, `${endpoint.secret}x`));
      assert.throws(() => verify({ ...request!, body: request!.body.replace('1999', '1') }, endpoint.secret));

      const attempts = await waitFor('the attempt in the log', async () => {
        const a = await attemptsOf(endpoint.id);
        return a.length === 1 && a;
      });
      assert.deepEqual(
        attempts.map((a) => ({
          eventId: a.eventId,
          eventType: a.eventType,
          attempt: a.attempt,
          succeeded: a.succeeded,
          statusCode: a.statusCode,
          error: a.error,
        })),
        [{ eventId: event.id, eventType: 'order.paid', attempt: 1, succeeded: true, statusCode: 200, error: null }],
      );
      assert.match(attempts[0]!.id, /^whd_/);
      assert.ok(attempts[0]!.durationMs >= 0 && attempts[0]!.finishedAt >= attempts[0]!.startedAt);
    });

    it('a receiver that fails twice, then recovers, gets the event with the same id, signed; the log shows 3 attempts, 2 failed, 1 succeeded', async () => {
      const r = await receiver();
      r.failNext(2);
      const endpoint = await createEndpoint(r.url, ['order.paid']);
      const event = await publish('order.paid');
      const requests = await r.waitForRequests(3);
      for (const request of requests) {
        verify(request, endpoint.secret);
        assert.equal(JSON.parse(request.body).id, event.id);
        assert.equal(request.headers['engine-room-event-id'], event.id);
      }
      assert.deepEqual(new Set(requests.map((q) => q.body)).size, 1, 'every attempt sends the same body');

      const attempts = await waitFor('3 attempts in the log', async () => {
        const a = await attemptsOf(endpoint.id);
        return a.length === 3 && a;
      });
      assert.deepEqual(
        attempts.map((a) => [a.attempt, a.succeeded, a.statusCode, a.eventId]),
        [
          [3, true, 200, event.id],
          [2, false, 500, event.id],
          [1, false, 500, event.id],
        ],
        'newest first',
      );
      // Paginated, a page at a time.
      const page1 = await env.client.ok(s.listDeliveryAttempts, {
        token: env.adminToken,
        params: { id: endpoint.id },
        query: { limit: 2 },
      });
      const page2 = await env.client.ok(s.listDeliveryAttempts, {
        token: env.adminToken,
        params: { id: endpoint.id },
        query: { limit: 2, cursor: page1.nextCursor! },
      });
      assert.deepEqual(
        [...page1.data, ...page2.data].map((a) => a.attempt),
        [3, 2, 1],
      );
      assert.equal(page2.nextCursor, null);

      // The success ended the failure streak; the delivery is done and its job completed.
      assert.equal((await getEndpoint(endpoint.id)).failingSince, null);
      assert.deepEqual(await deliveriesOf(event.id), [{ endpoint_id: endpoint.id, status: 'succeeded' }]);
      await waitFor(
        'the delivery job to complete',
        async () => (await jobStates(deliverQueue, event.id)).join() === 'completed',
      );
    });

    it('the dispatcher reading the same event again makes no second delivery and no second request', async () => {
      const r = await receiver();
      const endpoint = await createEndpoint(r.url, ['order.created']);
      const event = await publish('order.created');
      await r.waitForRequests(1);
      await fannedOut(event.id);

      // The position moved back before the event (as if its move had been lost) ...
      await env.database.db.query(
        `UPDATE webhook_dispatch_cursor SET tx = (SELECT tx FROM events WHERE id = $1), id = ''`,
        [event.id],
      );
      queue.wake('webhooks.dispatch');
      await fannedOut(event.id);
      // ... and the dispatcher run once more by hand over it.
      await env.database.db.query(
        `UPDATE webhook_dispatch_cursor SET tx = (SELECT tx FROM events WHERE id = $1), id = ''`,
        [event.id],
      );
      const again = await dispatchWebhookEvents(env.database.db, 1000);
      assert.equal(again.deliveries, 0);
      await fannedOut(event.id);

      assert.deepEqual(await deliveriesOf(event.id), [{ endpoint_id: endpoint.id, status: 'succeeded' }]);
      assert.equal((await jobStates(deliverQueue, event.id)).length, 1, 'one delivery job');
      assert.equal((await attemptsOf(endpoint.id)).length, 1);
      assert.equal(r.requests.length, 1);
    });

    it('a delivery job run again after it succeeded sends nothing', async () => {
      const r = await receiver();
      const endpoint = await createEndpoint(r.url, ['order.paid']);
      const event = await publish('order.paid');
      await r.waitForRequests(1);
      await waitFor('the delivery to succeed', async () => (await deliveriesOf(event.id))[0]?.status === 'succeeded');
      // The same job once more, as the queue may hand it out again (a lease that ran out, say).
      const job = await deliveryJobOf(env.database.db, event.id);
      await deliver(env.database.db, { ...job, attempt: 2 }, options);
      assert.equal(r.requests.length, 1);
      assert.equal((await attemptsOf(endpoint.id)).length, 1);
    });

    it('an endpoint gets only the types it subscribes to ("*": every webhook type, and nothing else)', async () => {
      const paid = await receiver();
      const created = await receiver();
      const all = await receiver();
      const paidEndpoint = await createEndpoint(paid.url, ['order.paid']);
      const createdEndpoint = await createEndpoint(created.url, ['order.created']);
      const allEndpoint = await createEndpoint(all.url, ['*']);

      const event = await publish('order.paid');
      await fannedOut(event.id);
      assert.deepEqual(
        (await deliveriesOf(event.id)).map((d) => d.endpoint_id).sort(),
        [paidEndpoint.id, allEndpoint.id].sort(),
      );
      await paid.waitForRequests(1);
      await all.waitForRequests(1);

      // An event that is not a webhook type (an internal one) goes nowhere, not even to "*".
      const internal = await publish('order.internal_note');
      await fannedOut(internal.id);
      assert.deepEqual(await deliveriesOf(internal.id), []);

      assert.equal(created.requests.length, 0);
      assert.deepEqual(await attemptsOf(createdEndpoint.id), []);
    });

    it('a redirect is a failed attempt and is not followed: its target receives nothing', async () => {
      const target = await receiver();
      const r = await receiver();
      // 307 is the redirect that a following client would re-POST, body and all.
      r.answerAfterwards({ kind: 'redirect', location: target.url, status: 307 });
      const endpoint = await createEndpoint(r.url, ['order.cancelled']);
      const event = await publish('order.cancelled');
      const attempts = await waitFor('2 failed attempts', async () => {
        const a = await attemptsOf(endpoint.id);
        return a.length >= 2 && a;
      });
      for (const a of attempts) {
        assert.deepEqual(
          [a.eventId, a.succeeded, a.statusCode, a.error],
          [event.id, false, 307, 'redirects are not followed'],
        );
      }
      assert.equal(target.requests.length, 0);
      assert.ok(r.requests.length >= 2);
      assert.ok((await getEndpoint(endpoint.id)).failingSince, 'the failure streak started');
    });

    it('an endpoint that keeps failing past the window is disabled with the reason; its deliveries stop; re-enabling clears the reason', async () => {
      const failing = await receiver();
      failing.answerAfterwards({ kind: 'status', status: 503 });
      const healthy = await receiver();
      const endpoint = await createEndpoint(failing.url, ['order.paid']);
      await createEndpoint(healthy.url, ['order.paid']);

      const event = await publish('order.paid');
      await waitFor('the first failed attempt', async () => (await attemptsOf(endpoint.id)).length === 1);
      const streak = await getEndpoint(endpoint.id);
      assert.ok(streak.failingSince, 'a failure starts the streak');
      assert.equal(streak.enabled, true, 'one failure does not disable');

      // Three days (the default window) pass while it keeps failing.
      await env.database.db.query(
        `UPDATE webhook_endpoints SET failing_since = now() - interval '3 days 1 minute' WHERE id = $1`,
        [endpoint.id],
      );
      const disabled = await waitFor('the endpoint to be disabled', async () => {
        const e = await getEndpoint(endpoint.id);
        return !e.enabled && e;
      });
      assert.match(
        disabled.disabledReason ?? '',
        /^Every delivery failed for more than 3 days \(since .+\); the last attempt: HTTP 503$/,
      );
      assert.ok(disabled.disabledAt);

      // The job ended instead of retrying, and the delivery is marked failed.
      await waitFor(
        'the delivery job to end',
        async () => (await jobStates(deliverQueue, event.id, endpoint.id)).join() === 'completed',
      );
      assert.deepEqual((await deliveriesOf(event.id)).find((d) => d.endpoint_id === endpoint.id)?.status, 'failed');
      assert.equal((await attemptsOf(endpoint.id)).length, 2);

      // New events are not sent to it; a manual redelivery is refused while it is disabled.
      const later = await publish('order.paid');
      await fannedOut(later.id);
      assert.deepEqual(
        (await deliveriesOf(later.id)).filter((d) => d.endpoint_id === endpoint.id),
        [],
      );
      const refused = await inject('POST', `/v1/webhook-endpoints/${endpoint.id}/deliveries/${event.id}/redeliver`);
      assert.equal(refused.status, 409);
      assert.equal(refused.body.code, 'invalid_state');
      assert.equal(failing.requests.length, 2);

      const enabled = await env.client.ok(s.updateWebhookEndpoint, {
        token: env.adminToken,
        params: { id: endpoint.id },
        body: { enabled: true },
      });
      assert.deepEqual(
        [enabled.enabled, enabled.disabledReason, enabled.disabledAt, enabled.failingSince],
        [true, null, null, null],
      );
    });

    it('a manual redelivery sends the same event, with the same id, once more', async () => {
      const r = await receiver();
      const endpoint = await createEndpoint(r.url, ['message.created']);
      const event = await publish('message.created', { message: { id: 'msg_1', body: 'hello' } });
      await r.waitForRequests(1);
      await waitFor('the first attempt in the log', async () => (await attemptsOf(endpoint.id)).length === 1);

      const res = await inject('POST', `/v1/webhook-endpoints/${endpoint.id}/deliveries/${event.id}/redeliver`);
      assert.equal(res.status, 202);
      assert.deepEqual(res.body, {
        endpointId: endpoint.id,
        eventId: event.id,
        eventType: 'message.created',
        status: 'pending',
        attempts: 1,
      });
      queue.wake(deliverQueue);
      const requests = await r.waitForRequests(2);
      assert.equal(requests[1]!.body, requests[0]!.body, 'the same event, byte for byte');
      assert.equal(JSON.parse(requests[1]!.body).id, event.id);
      verify(requests[1]!, endpoint.secret);
      const attempts = await waitFor('the second attempt in the log', async () => {
        const a = await attemptsOf(endpoint.id, event.id);
        return a.length === 2 && a;
      });
      assert.deepEqual(
        attempts.map((a) => [a.attempt, a.succeeded]),
        [
          [2, true],
          [1, true],
        ],
      );

      const unknown = await inject(
        'POST',
        `/v1/webhook-endpoints/${endpoint.id}/deliveries/evt_00000000000000000000000000/redeliver`,
      );
      assert.equal(unknown.status, 404);
      const otherType = await publish('order.paid');
      const notSubscribed = await inject(
        'POST',
        `/v1/webhook-endpoints/${endpoint.id}/deliveries/${otherType.id}/redeliver`,
      );
      assert.equal(notSubscribed.status, 404);
    });

    it('a redelivery supersedes a delivery still being retried: the receiver gets the event once for it, not twice', async () => {
      const r = await receiver();
      r.failNext(1);
      const endpoint = await createEndpoint(r.url, ['order.paid']);
      const event = await publish('order.paid');
      await waitFor('the failed first attempt', async () => (await attemptsOf(endpoint.id)).length === 1);
      // Within the backoff before the retry (at least 1 s), redeliver by hand.
      const res = await inject('POST', `/v1/webhook-endpoints/${endpoint.id}/deliveries/${event.id}/redeliver`);
      assert.equal(res.status, 202);
      queue.wake(deliverQueue);
      await r.waitForRequests(2);
      // The first job's retry comes and stands down: it completes without a request.
      await waitFor('both delivery jobs to complete', async () => {
        const st = await jobStates(deliverQueue, event.id);
        return st.length === 2 && st.every((x) => x === 'completed');
      });
      assert.equal(r.requests.length, 2);
      assert.deepEqual(
        (await attemptsOf(endpoint.id)).map((a) => [a.attempt, a.succeeded]),
        [
          [2, true],
          [1, false],
        ],
      );
    });

    it("two processes' dispatchers running at once send each event once", async () => {
      const db = env.database.db;
      const r = await receiver();
      const endpoint = await createEndpoint(r.url, ['order.paid']);
      // A second worker process, as far as the database can tell: its own queue, dispatcher and delivery workers.
      const second = await startQueue(db, { pollingIntervalSeconds: 0.05, maintain: false, runSchedules: false });
      registerWebhookWorkers(second, db, options);
      try {
        const events = await Promise.all(
          Array.from({ length: 20 }, (_, i) => publish('order.paid', { order: { id: `ord_${i}` } })),
        );
        await r.waitForRequests(events.length);
        await waitFor('both dispatchers to pass every event', async () =>
          (await Promise.all(events.map((e) => dispatched(db, e.id)))).every(Boolean),
        );
        // Every event passed, so no delivery can be made any more; once each delivery's job has
        // completed, no request can come any more either: a duplicate would have arrived by now.
        await waitFor('every delivery job to complete', async () => {
          const states = await db.query<{ state: string }>(
            `SELECT state::text FROM pgboss.job WHERE name = $1 AND data->>'endpointId' = $2`,
            [deliverQueue, endpoint.id],
          );
          return states.length === events.length && states.every((j) => j.state === 'completed');
        });
        const ids = events.map((e) => e.id).sort();
        assert.deepEqual(r.requests.map((q) => JSON.parse(q.body).id).sort(), ids);
        const rows = await db.query<{ event_id: string }>(
          'SELECT event_id FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY event_id',
          [endpoint.id],
        );
        assert.deepEqual(
          rows.map((d) => d.event_id),
          ids,
        );
        assert.deepEqual(
          (await deliveryJobs(db)).filter((j) => j.startsWith(`${endpoint.id} `)),
          ids.map((id) => `${endpoint.id} ${id} 1`),
        );
      } finally {
        await second.stop();
      }
    });
  });

  describe(`webhook dispatcher [${engine}]`, () => {
    let database: TestDatabase;
    let db: Db;

    before(async () => {
      database = await freshDatabase(engine);
      db = database.db;
      await declareQueues(db, webhookQueuesFor(options));
    });
    after(async () => {
      await database?.drop();
    });
    afterEach(async () => {
      await db.query('DELETE FROM webhook_endpoints');
      await db.query('DELETE FROM pgboss.job WHERE name = $1', [deliverQueue]);
    });

    const publish = (type: string, data: object = {}) => db.transaction((tx) => publishEvent(tx, type, data));
    const endpoint = async (events: string[]) =>
      (await createEndpointRow(db, { url: 'http://127.0.0.1:9/hooks', events }, { allowPrivateUrls: true })).id;
    const deliveries = async () =>
      (
        await db.query<{ d: string }>(`SELECT endpoint_id || ' ' || event_id AS d FROM webhook_deliveries ORDER BY 1`)
      ).map((r) => r.d);
    const position = async () =>
      (await db.query<{ tx: string; id: string }>('SELECT tx::text AS tx, id FROM webhook_dispatch_cursor'))[0];
    const jobOf = (eventId: string) => deliveryJobOf(db, eventId);
    const attemptsOf = async (endpointId: string) =>
      (
        await db.query<{ attempt: number; succeeded: boolean; status_code: number | null; error: string | null }>(
          'SELECT attempt, succeeded, status_code, error FROM webhook_delivery_attempts WHERE endpoint_id = $1 ORDER BY id DESC',
          [endpointId],
        )
      ).map((a) => [a.attempt, a.succeeded, a.status_code, a.error]);
    const positionOf = async (eventId: string) =>
      (await db.query<{ tx: string; id: string }>('SELECT tx::text AS tx, id FROM events WHERE id = $1', [eventId]))[0];
    // On PostgreSQL the horizon is the server's: a transaction of another test file can hold it
    // back for a moment. These wait for it rather than assume it.
    const settled = () =>
      waitFor(
        'every event to be below the horizon',
        async () =>
          (
            await db.query<{ settled: boolean }>(
              'SELECT NOT EXISTS (SELECT 1 FROM events WHERE tx >= pg_snapshot_xmin(pg_current_snapshot())) AS settled',
            )
          )[0]!.settled,
      );
    /** Runs the dispatcher until its position has passed every event; answers what it read and made. */
    const drain = async (limit = 1000) => {
      const total = { events: 0, deliveries: 0 };
      await waitFor('the dispatcher to pass every event', async () => {
        const r = await dispatchWebhookEvents(db, limit);
        total.events += r.events;
        total.deliveries += r.deliveries;
        if (r.events > 0) return false;
        return (
          await db.query<{ done: boolean }>(
            'SELECT NOT EXISTS (SELECT 1 FROM events e, webhook_dispatch_cursor c WHERE (e.tx, e.id) > (c.tx, c.id)) AS done',
          )
        )[0]!.done;
      });
      return total;
    };

    it('reads every event in batches, makes one delivery and one job per enabled endpoint subscribed to a webhook type, and moves its position to the last event read', async () => {
      await drain();
      const paid = await endpoint(['order.paid']);
      const all = await endpoint(['*']);
      const off = await endpoint(['*']);
      await db.query('UPDATE webhook_endpoints SET enabled = false, disabled_at = now() WHERE id = $1', [off]);
      const e1 = await publish('order.paid');
      const e2 = await publish('order.internal_note');
      const e3 = await publish('order.created');
      const e4 = await publish('order.paid');
      const e5 = await publish('message.created');
      await settled();

      assert.deepEqual(await dispatchWebhookEvents(db, 2), { events: 2, deliveries: 2 });
      assert.deepEqual(await position(), await positionOf(e2.id));
      assert.deepEqual(await dispatchWebhookEvents(db, 2), { events: 2, deliveries: 3 });
      assert.deepEqual(await dispatchWebhookEvents(db, 2), { events: 1, deliveries: 1 });
      assert.deepEqual(await position(), await positionOf(e5.id));
      assert.deepEqual(await dispatchWebhookEvents(db, 2), { events: 0, deliveries: 0 });

      const expected = [
        [paid, e1],
        [all, e1],
        [all, e3],
        [paid, e4],
        [all, e4],
        [all, e5],
      ]
        .map(([w, e]) => `${w as string} ${(e as PublishedEvent).id}`)
        .sort();
      assert.deepEqual(await deliveries(), expected);
      assert.deepEqual(
        await deliveryJobs(db),
        expected.map((d) => `${d} 1`),
      );
    });

    it('an event published before an endpoint existed is not delivered to it, whether or not the dispatcher had read it yet', async () => {
      await drain();
      await publish('order.paid');
      await drain(); // read, with no endpoint to deliver to
      const first = await endpoint(['order.paid']);
      const unread = await publish('order.paid'); // not read yet when the second endpoint comes
      const second = await endpoint(['*']);
      const later = await publish('order.paid');
      assert.deepEqual(await drain(), { events: 2, deliveries: 3 });
      assert.deepEqual(
        await deliveries(),
        [`${first} ${unread.id}`, `${first} ${later.id}`, `${second} ${later.id}`].sort(),
      );
    });

    it('events committed out of id order, from many transactions at once, are each fanned out once: none skipped, none twice', async () => {
      await drain();
      const all = await endpoint(['*']);
      const published: PublishedEvent[] = [];
      if (engine === 'postgres') {
        // An event whose transaction stays open while a later one commits and the dispatcher runs.
        let release!: () => void;
        const gate = new Promise<void>((resolve) => {
          release = resolve;
        });
        let opened!: (e: PublishedEvent) => void;
        const firstPublished = new Promise<PublishedEvent>((resolve) => {
          opened = resolve;
        });
        const first = db.transaction(async (tx) => {
          const e = await publishEvent(tx, 'order.paid', { n: 'first' });
          opened(e);
          await gate;
          return e;
        });
        const early = await firstPublished;
        const later = await publish('order.paid', { n: 'later' });
        assert.ok(early.id < later.id, 'the open transaction holds the smaller id');
        // Committed, but behind the open transaction's horizon: not read, so not passed either.
        assert.deepEqual(await dispatchWebhookEvents(db, 100), { events: 0, deliveries: 0 });
        assert.deepEqual(await deliveries(), []);
        release();
        published.push(await first, later);
        assert.deepEqual(await drain(), { events: 2, deliveries: 2 });
        assert.deepEqual(await deliveries(), [`${all} ${early.id}`, `${all} ${later.id}`].sort());
      }

      // Thirty transactions at once, of one to three events each, committing in whatever order,
      // while a dispatcher reads small batches.
      let publishing = true;
      const dispatching = (async () => {
        while (publishing) {
          await dispatchWebhookEvents(db, 3);
          await delay(2);
        }
      })();
      const batches = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          db.transaction(async (tx) => {
            const events: PublishedEvent[] = [];
            for (let k = 0; k <= i % 3; k++) {
              events.push(await publishEvent(tx, 'order.paid', { i, k }));
              await delay(Math.random() * 5);
            }
            return events;
          }),
        ),
      );
      publishing = false;
      await dispatching;
      published.push(...batches.flat());
      await drain(3);

      const expected = published.map((e) => `${all} ${e.id}`).sort();
      assert.equal(new Set(expected).size, published.length);
      assert.deepEqual(await deliveries(), expected);
      assert.deepEqual(
        await deliveryJobs(db),
        expected.map((d) => `${d} 1`),
      );
    });

    it('two dispatchers running at once read each event once and make each delivery once', async () => {
      await drain();
      const paid = await endpoint(['order.paid']);
      const all = await endpoint(['*']);
      const events = await Promise.all(
        Array.from({ length: 40 }, (_, i) => publish(i % 4 === 0 ? 'order.created' : 'order.paid', { i })),
      );
      await settled();
      const [a, b] = await Promise.all([drain(5), drain(5)]);
      assert.equal(a.events + b.events, events.length, 'every event read by exactly one of them');
      const expected = events
        .flatMap((e) => (e.type === 'order.paid' ? [paid, all] : [all]).map((w) => `${w} ${e.id}`))
        .sort();
      assert.equal(a.deliveries + b.deliveries, expected.length);
      assert.deepEqual(await deliveries(), expected);
      assert.deepEqual(
        await deliveryJobs(db),
        expected.map((d) => `${d} 1`),
      );
    });

    it('a dispatcher that fails reports it through onError and goes on once the database is back; stop() waits for it', async () => {
      await drain();
      const all = await endpoint(['*']);
      const errors: Error[] = [];
      const q = await startQueue(db, {
        pollingIntervalSeconds: 0.05,
        maintain: false,
        runSchedules: false,
        onError: (err) => errors.push(err),
      });
      registerWebhookWorkers(q, db, options);
      let event: PublishedEvent;
      try {
        await db.query('ALTER TABLE webhook_dispatch_cursor RENAME TO webhook_dispatch_cursor_away');
        event = await publish('order.paid');
        await waitFor('the failure to be reported', () => errors.length > 0);
        assert.match(errors[0]!.message, /webhook_dispatch_cursor/);
        await db.query('ALTER TABLE webhook_dispatch_cursor_away RENAME TO webhook_dispatch_cursor');
        await waitFor('the delivery once the table is back', async () =>
          (await deliveries()).includes(`${all} ${event.id}`),
        );
      } finally {
        await db.query('ALTER TABLE IF EXISTS webhook_dispatch_cursor_away RENAME TO webhook_dispatch_cursor');
        await q.stop();
      }
      // Stopped: a new event is left for the next dispatcher. The one run here by hand is the one
      // that reads it, so the stopped one did not (and cannot any more: the delivery exists once).
      const reported = errors.length;
      const after = await publish('order.paid');
      await settled();
      assert.deepEqual(await dispatchWebhookEvents(db), { events: 1, deliveries: 1 });
      assert.ok((await deliveries()).includes(`${all} ${after.id}`));
      assert.equal(errors.length, reported, 'nothing ran after stop()');
    });

    it('a receiver that does not answer within the timeout is a failed attempt, and the next attempt delivers (garbage collections meanwhile included)', async () => {
      await drain();
      const r = await startWebhookReceiver();
      try {
        r.hangNext(1);
        const id = (
          await createEndpointRow(db, { url: r.url, events: ['order.fulfilled'] }, { allowPrivateUrls: true })
        ).id;
        const event = await publish('order.fulfilled');
        await drain();
        const job = await jobOf(event.id);
        // A timeout signal that only the garbage collector holds would never fire: collect often.
        const collector = setInterval(collectGarbage, 20);
        try {
          await assert.rejects(
            deliver(db, { ...job, attempt: 1 }, { ...options, timeoutMs: 200 }),
            /no answer within 200 ms/,
          );
        } finally {
          clearInterval(collector);
        }
        await deliver(db, { ...job, attempt: 2 }, options);
        assert.deepEqual(await attemptsOf(id), [
          [2, true, 200, null],
          [1, false, null, 'no answer within 200 ms'],
        ]);
        assert.deepEqual(
          r.requests.map((q) => JSON.parse(q.body).id),
          [event.id, event.id],
        );
      } finally {
        await r.close();
      }
    });
  });

  // With WEBHOOK_ALLOW_PRIVATE_URLS off, as in production. No workers run here: the tests make the
  // deliveries and run their jobs by hand, with a resolver of their own where a name must resolve
  // to a chosen address.
  describe(`webhook destinations, private addresses refused [${engine}]`, () => {
    let env: TestEnv;
    // The default request timeout (options): one delivery here is real, and 2 s was a window a busy machine could miss.
    const strict: WebhookOptions = { ...options, allowPrivateUrls: false };

    before(async () => {
      env = await startTestEnv(engine);
    });
    after(async () => {
      await env?.close();
    });
    afterEach(async () => {
      await env.database.db.query('DELETE FROM webhook_endpoints');
    });

    const inject = async (method: 'POST' | 'PATCH', url: string, body: object) => {
      const res = await env.app.inject({
        method,
        url,
        headers: { authorization: `Bearer ${env.adminToken}` },
        payload: body,
      });
      return { status: res.statusCode, body: res.json() };
    };
    const publish = () =>
      env.database.db.transaction((tx) => publishEvent(tx, 'order.paid', { order: { id: 'ord_dest' } }, []));
    /** Runs the dispatcher until it has made the event's deliveries; answers the event's delivery job. */
    const deliveryJob = async (eventId: string) => {
      await waitFor(`the dispatcher to pass ${eventId}`, async () => {
        await dispatchWebhookEvents(env.database.db);
        return dispatched(env.database.db, eventId);
      });
      return deliveryJobOf(env.database.db, eventId);
    };
    const attemptsOf = async (id: string) =>
      (
        await env.client.ok(s.listDeliveryAttempts, { token: env.adminToken, params: { id }, query: { limit: 100 } })
      ).data.map((a) => [a.attempt, a.succeeded, a.statusCode, a.error]);
    /** A resolver that knows a few names, as a DNS server (or an attacker's) might answer them. */
    const resolver =
      (names: Record<string, string[]>): Resolve =>
      async (hostname) => {
        const addresses = names[hostname];
        if (!addresses) throw Object.assign(new Error(`unknown name ${hostname}`), { code: 'ENOTFOUND' });
        return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
      };

    it('every spelling of a loopback, private, link-local, metadata or otherwise non-public address is refused at creation and update: 400 validation_failed', async () => {
      const refused = [
        'http://127.0.0.1/hooks',
        'http://localhost/hooks',
        'http://2130706433/hooks',
        'http://0x7f.0.0.1/hooks',
        'http://[::1]/hooks',
        'http://[::ffff:127.0.0.1]/hooks',
        'http://0.0.0.0/hooks',
        'http://169.254.169.254/latest/meta-data/',
        'http://127.1:8080/',
        'http://017700000001/',
        'http://0/',
        'https://LOCALHOST./hooks',
        'http://shop.localhost/hooks',
        'http://10.0.0.7/',
        'http://172.16.5.4/',
        'http://192.168.1.1/',
        'http://100.64.0.1/',
        'http://100.100.100.200/',
        'http://192.0.0.192/',
        'http://224.0.0.1/',
        'http://255.255.255.255/',
        'http://[::]/',
        'http://[fc00::1]/',
        'http://[fd00:ec2::254]/',
        'http://[fe80::1]/',
        'http://[ff02::1]/',
        'http://[64:ff9b::7f00:1]/',
        'http://[::127.0.0.1]/',
        'http://[2002:7f00:1::]/',
        'http://[2001:db8::1]/',
      ];
      for (const url of refused) {
        const res = await inject('POST', '/v1/webhook-endpoints', { url, events: ['order.paid'] });
        assert.equal(res.status, 400, url);
        assert.equal(res.body.code, 'validation_failed', url);
        assert.match(res.body.detail, /public addresses only/, url);
        assert.equal(res.body.errors[0].path, '/url', url);
      }
      const accepted = [
        'https://hooks.example.com/x',
        'http://8.8.8.8:8443/x',
        'https://[2606:4700::1]/x',
        'https://[::ffff:8.8.8.8]/x',
        'https://[64:ff9b::808:808]/x',
      ];
      for (const url of accepted)
        assert.equal((await inject('POST', '/v1/webhook-endpoints', { url, events: ['order.paid'] })).status, 201, url);

      const { id } = await env.client.ok(s.createWebhookEndpoint, {
        token: env.adminToken,
        body: { url: 'https://hooks.example.com/y', events: ['order.paid'] },
      });
      for (const url of ['http://[::ffff:127.0.0.1]/', 'http://169.254.169.254/']) {
        const res = await inject('PATCH', `/v1/webhook-endpoints/${id}`, { url });
        assert.equal(res.status, 400, url);
        assert.equal(res.body.code, 'validation_failed');
      }
      assert.equal(
        (await env.client.ok(s.getWebhookEndpoint, { token: env.adminToken, params: { id } })).url,
        'https://hooks.example.com/y',
      );
    });

    it('a name that resolves to a private address is refused at delivery: a failed attempt that says why, and no connection; allowed, it is delivered', async () => {
      const r = await startWebhookReceiver();
      try {
        const port = new URL(r.url).port;
        const resolve = resolver({
          'hooks.internal.test': ['127.0.0.1'],
          'mixed.internal.test': ['93.184.216.34', '127.0.0.1'],
        });
        const inside = await env.client.ok(s.createWebhookEndpoint, {
          token: env.adminToken,
          body: { url: `http://hooks.internal.test:${port}/hooks`, events: ['order.paid'] },
        });
        const event = await publish();
        const job = await deliveryJob(event.id);
        await assert.rejects(
          deliver(env.database.db, job, { ...strict, resolve }),
          /refused: hooks\.internal\.test resolves to 127\.0\.0\.1/,
        );
        assert.deepEqual(await attemptsOf(inside.id), [
          [
            1,
            false,
            null,
            'refused: hooks.internal.test resolves to 127.0.0.1, a loopback address (WEBHOOK_ALLOW_PRIVATE_URLS is off)',
          ],
        ]);
        assert.equal(r.connections, 0, 'no connection was made');

        // A name with a public and a private address is refused as a whole: the connection could go to either.
        await env.client.ok(s.updateWebhookEndpoint, {
          token: env.adminToken,
          params: { id: inside.id },
          body: { url: `http://mixed.internal.test:${port}/hooks` },
        });
        await assert.rejects(
          deliver(env.database.db, { ...job, attempt: 2 }, { ...strict, resolve }),
          /refused: mixed\.internal\.test resolves to 127\.0\.0\.1/,
        );
        assert.equal(r.connections, 0, 'no connection was made');

        // With the setting on (local development), the same name is delivered to, through the same resolver.
        await env.client.ok(s.updateWebhookEndpoint, {
          token: env.adminToken,
          params: { id: inside.id },
          body: { url: `http://hooks.internal.test:${port}/hooks` },
        });
        await deliver(env.database.db, { ...job, attempt: 3 }, { ...strict, resolve, allowPrivateUrls: true });
        assert.equal(r.requests.length, 1);
        assert.equal(JSON.parse(r.requests[0]!.body).id, event.id);
        assert.deepEqual(
          (await attemptsOf(inside.id)).map((a) => a.slice(0, 2)),
          [
            [3, true],
            [2, false],
            [1, false],
          ],
        );
      } finally {
        await r.close();
      }
    });

    it('an endpoint registered while private URLs were allowed is refused at delivery once they are not: by address, and by localhost through the system resolver', async () => {
      const r = await startWebhookReceiver();
      try {
        const port = new URL(r.url).port;
        for (const [url, error] of [
          [r.url, /^refused: 127\.0\.0\.1 is a loopback address/],
          [`http://[::ffff:127.0.0.1]:${port}/hooks`, /^refused: ::ffff:7f00:1 is a loopback address/],
          [`http://localhost:${port}/hooks`, /^refused: localhost resolves to (127\.0\.0\.1|::1), a loopback address/],
        ] as const) {
          const endpoint = await createEndpointRow(
            env.database.db,
            { url, events: ['order.paid'] },
            { allowPrivateUrls: true },
          );
          const event = await publish();
          await assert.rejects(deliver(env.database.db, await deliveryJob(event.id), strict), /refused/);
          const [attempt] = await attemptsOf(endpoint.id);
          assert.match(String(attempt![3]), error, url);
          await env.database.db.query('DELETE FROM webhook_endpoints');
        }
        assert.equal(r.connections, 0, 'no connection was made');
      } finally {
        await r.close();
      }
    });
  });
}
