// Webhooks on both engines, through the HTTP API, the real queue and a real receiver over HTTP:
// endpoints and their validation, signed deliveries that verify with the secret, retries that end
// in the same event id, a fan-out that runs twice making one delivery, redirects and timeouts as
// failures, an endpoint disabled after failing past the window, and manual redelivery.
import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { engines } from './support/database.js';
import { startTestEnv, type TestEnv } from './support/app.js';
import { startWebhookReceiver, type ReceivedRequest, type WebhookReceiver } from './support/webhook-receiver.js';
import { eventFanoutQueue, eventQueues, publishEvent } from '../src/platform/events.js';
import { declareQueues, enqueue, startQueue, type Queue } from '../src/platform/queue.js';
import { deliver, deliverQueue, fanOutToWebhooks, registerWebhookWorkers, webhookQueuesFor, type WebhookOptions } from '../src/modules/webhooks/delivery.js';
import * as s from '../src/modules/webhooks/schemas.js';

// Short timeout and backoff, so that a retry comes within seconds; the disabling window stays the
// default (3 days) and the test moves the failure streak's start back instead of waiting.
const options: WebhookOptions = { timeoutMs: 500, retryDelaySeconds: 1, retryLimit: 3, concurrency: 4 };

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false | null> | T | undefined | false | null, timeoutMs = 30_000): Promise<T> {
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

/** A full garbage collection, on demand (what --expose-gc gives, without the flag). */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

for (const engine of engines()) {
  describe(`webhooks [${engine}]`, () => {
    let env: TestEnv;
    let queue: Queue;
    const receivers: WebhookReceiver[] = [];

    before(async () => {
      env = await startTestEnv(engine);
      const db = env.database.db;
      await declareQueues(db, [...eventQueues, ...webhookQueuesFor(options)]);
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

    const inject = async (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown, token = env.adminToken) => {
      const res = await env.app.inject({ method, url, headers: { authorization: `Bearer ${token}` }, ...(body !== undefined ? { payload: body as object } : {}) });
      return { status: res.statusCode, type: String(res.headers['content-type']), body: res.body ? res.json() : null };
    };

    const createEndpoint = (url: string, events: string[]) =>
      env.client.ok(s.createWebhookEndpoint, { token: env.adminToken, body: { url, events: events as s.WebhookEventType[] } });
    const getEndpoint = (id: string) => env.client.ok(s.getWebhookEndpoint, { token: env.adminToken, params: { id } });
    const attemptsOf = async (id: string, eventId?: string) =>
      (await env.client.ok(s.listDeliveryAttempts, { token: env.adminToken, params: { id }, query: { limit: 100, ...(eventId ? { eventId } : {}) } })).data;

    const publish = async (type: string, data: object = { order: { id: 'ord_test' } }) => {
      const event = await env.database.db.transaction((tx) => publishEvent(tx, type, data, []));
      queue.wake(eventFanoutQueue);
      return event;
    };
    const jobStates = async (name: string, eventId: string, endpointId?: string) =>
      (await env.database.db.query<{ state: string }>(
        `SELECT state::text FROM pgboss.job WHERE name = $1 AND data->>'eventId' = $2 AND ($3::text IS NULL OR data->>'endpointId' = $3)`,
        [name, eventId, endpointId ?? null],
      )).map((r) => r.state);
    const fannedOut = (eventId: string) => waitFor(`the fan-out of ${eventId}`, async () => (await jobStates(eventFanoutQueue, eventId)).includes('completed'));
    const deliveriesOf = async (eventId: string) =>
      env.database.db.query<{ endpoint_id: string; status: string }>('SELECT endpoint_id, status FROM webhook_deliveries WHERE event_id = $1 ORDER BY endpoint_id', [eventId]);

    it('an admin registers, reads, lists, changes and deletes an endpoint; the secret is shown only at creation and never logged', async () => {
      const created = await createEndpoint('https://hooks.example.com/engine-room', ['order.paid', 'order.cancelled']);
      assert.match(created.id, /^whe_[0-9a-z]{26}$/);
      assert.match(created.secret, /^whsec_[A-Za-z0-9_-]{43}$/);
      assert.deepEqual(
        { url: created.url, events: created.events, enabled: created.enabled, disabledReason: created.disabledReason, disabledAt: created.disabledAt, failingSince: created.failingSince },
        { url: 'https://hooks.example.com/engine-room', events: ['order.paid', 'order.cancelled'], enabled: true, disabledReason: null, disabledAt: null, failingSince: null },
      );

      const read = await inject('GET', `/v1/webhook-endpoints/${created.id}`);
      assert.equal(read.status, 200);
      assert.equal(read.body.secret, undefined);
      assert.ok(!JSON.stringify(read.body).includes(created.secret));

      const other = await createEndpoint('http://127.0.0.1:9/other', ['*']);
      const first = await env.client.ok(s.listWebhookEndpoints, { token: env.adminToken, query: { limit: 1 } });
      assert.deepEqual(first.data.map((e) => e.id), [other.id], 'newest first');
      assert.ok(first.nextCursor);
      const second = await env.client.ok(s.listWebhookEndpoints, { token: env.adminToken, query: { limit: 1, cursor: first.nextCursor! } });
      assert.deepEqual(second.data.map((e) => e.id), [created.id]);
      assert.equal(second.nextCursor, null);
      assert.ok(!JSON.stringify([first, second]).includes('whsec_'));

      const changed = await env.client.ok(s.updateWebhookEndpoint, { token: env.adminToken, params: { id: created.id }, body: { url: 'https://hooks.example.com/v2', events: ['order.created'] } });
      assert.deepEqual([changed.url, changed.events, changed.enabled], ['https://hooks.example.com/v2', ['order.created'], true]);

      const off = await env.client.ok(s.updateWebhookEndpoint, { token: env.adminToken, params: { id: created.id }, body: { enabled: false } });
      assert.equal(off.enabled, false);
      assert.equal(off.disabledReason, 'Disabled by an administrator');
      assert.ok(off.disabledAt);
      const on = await env.client.ok(s.updateWebhookEndpoint, { token: env.adminToken, params: { id: created.id }, body: { enabled: true } });
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
        assert.ok(res.body.errors.some((e: { path: string }) => e.path === path), `${JSON.stringify(body)}: ${JSON.stringify(res.body.errors)}`);
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
      assert.deepEqual(body, { id: event.id, type: 'order.paid', createdAt: event.createdAt, data: { order: { id: 'ord_1', total: { amount: 1999, currency: 'EUR' } } } });
      assert.deepEqual(Object.keys(body), ['id', 'type', 'createdAt', 'data']);

      const { timestamp } = verify(request!, endpoint.secret);
      // The replay check a receiver makes: the timestamp is now, give or take a clock's skew.
      assert.ok(Math.abs(timestamp - Date.now() / 1000) < 300, `timestamp ${timestamp}`);
      // A wrong secret or a changed body does not verify.
      assert.throws(() => verify(request!, `${endpoint.secret}x`));
      assert.throws(() => verify({ ...request!, body: request!.body.replace('1999', '1') }, endpoint.secret));

      const attempts = await waitFor('the attempt in the log', async () => { const a = await attemptsOf(endpoint.id); return a.length === 1 && a; });
      assert.deepEqual(
        attempts.map((a) => ({ eventId: a.eventId, eventType: a.eventType, attempt: a.attempt, succeeded: a.succeeded, statusCode: a.statusCode, error: a.error })),
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

      const attempts = await waitFor('3 attempts in the log', async () => { const a = await attemptsOf(endpoint.id); return a.length === 3 && a; });
      assert.deepEqual(
        attempts.map((a) => [a.attempt, a.succeeded, a.statusCode, a.eventId]),
        [[3, true, 200, event.id], [2, false, 500, event.id], [1, false, 500, event.id]],
        'newest first',
      );
      // Paginated, a page at a time.
      const page1 = await env.client.ok(s.listDeliveryAttempts, { token: env.adminToken, params: { id: endpoint.id }, query: { limit: 2 } });
      const page2 = await env.client.ok(s.listDeliveryAttempts, { token: env.adminToken, params: { id: endpoint.id }, query: { limit: 2, cursor: page1.nextCursor! } });
      assert.deepEqual([...page1.data, ...page2.data].map((a) => a.attempt), [3, 2, 1]);
      assert.equal(page2.nextCursor, null);

      // The success ended the failure streak; the delivery is done and its job completed.
      assert.equal((await getEndpoint(endpoint.id)).failingSince, null);
      assert.deepEqual(await deliveriesOf(event.id), [{ endpoint_id: endpoint.id, status: 'succeeded' }]);
      await waitFor('the delivery job to complete', async () => (await jobStates(deliverQueue, event.id)).join() === 'completed');
    });

    it('fanning the same event out twice makes one delivery and one request', async () => {
      const r = await receiver();
      const endpoint = await createEndpoint(r.url, ['order.created']);
      const event = await publish('order.created');
      await r.waitForRequests(1);
      await fannedOut(event.id);

      // The fan-out job delivered again (a retry after a lost acknowledgement, say) ...
      const again = await env.database.db.transaction((tx) => enqueue(tx, eventFanoutQueue, { eventId: event.id }));
      queue.wake(eventFanoutQueue);
      await waitFor('the second fan-out', async () => {
        const [row] = await env.database.db.query<{ state: string }>('SELECT state::text FROM pgboss.job WHERE name = $1 AND id = $2', [eventFanoutQueue, again]);
        return row?.state === 'completed';
      });
      // ... and run a third time by hand.
      assert.equal(await env.database.db.transaction((tx) => fanOutToWebhooks(tx, event.id)), 0);

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
      const [job] = await env.database.db.query<{ id: string; data: { endpointId: string; eventId: string; round: number } }>(
        'SELECT id, data FROM pgboss.job WHERE name = $1 AND data->>\'eventId\' = $2', [deliverQueue, event.id]);
      await deliver(env.database.db, { id: job!.id, name: deliverQueue, data: job!.data, attempt: 2, signal: new AbortController().signal }, options);
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
      assert.deepEqual((await deliveriesOf(event.id)).map((d) => d.endpoint_id).sort(), [paidEndpoint.id, allEndpoint.id].sort());
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
      const attempts = await waitFor('2 failed attempts', async () => { const a = await attemptsOf(endpoint.id); return a.length >= 2 && a; });
      for (const a of attempts) {
        assert.deepEqual([a.eventId, a.succeeded, a.statusCode, a.error], [event.id, false, 307, 'redirects are not followed']);
      }
      assert.equal(target.requests.length, 0);
      assert.ok(r.requests.length >= 2);
      assert.ok((await getEndpoint(endpoint.id)).failingSince, 'the failure streak started');
    });

    it('a receiver that does not answer within the timeout is a failed attempt, retried (garbage collections meanwhile included)', async () => {
      const r = await receiver();
      r.hangNext(1);
      const endpoint = await createEndpoint(r.url, ['order.fulfilled']);
      // A timeout signal that only the garbage collector holds would never fire: collect often.
      const collector = setInterval(collectGarbage, 20);
      const event = await publish('order.fulfilled');
      const attempts = await waitFor('a timeout, then a success', async () => { const a = await attemptsOf(endpoint.id); return a.length === 2 && a; })
        .finally(() => clearInterval(collector));
      assert.deepEqual(
        attempts.map((a) => [a.attempt, a.succeeded, a.statusCode, a.error]),
        [[2, true, 200, null], [1, false, null, `no answer within ${options.timeoutMs} ms`]],
      );
      assert.deepEqual(r.requests.map((q) => JSON.parse(q.body).id), [event.id, event.id]);
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
      await env.database.db.query(`UPDATE webhook_endpoints SET failing_since = now() - interval '3 days 1 minute' WHERE id = $1`, [endpoint.id]);
      const disabled = await waitFor('the endpoint to be disabled', async () => { const e = await getEndpoint(endpoint.id); return !e.enabled && e; });
      assert.match(disabled.disabledReason ?? '', /^Every delivery failed for more than 3 days \(since .+\); the last attempt: HTTP 503$/);
      assert.ok(disabled.disabledAt);

      // The job ended instead of retrying, and the delivery is marked failed.
      await waitFor('the delivery job to end', async () => (await jobStates(deliverQueue, event.id, endpoint.id)).join() === 'completed');
      assert.deepEqual((await deliveriesOf(event.id)).find((d) => d.endpoint_id === endpoint.id)?.status, 'failed');
      assert.equal((await attemptsOf(endpoint.id)).length, 2);

      // New events are not sent to it; a manual redelivery is refused while it is disabled.
      const later = await publish('order.paid');
      await fannedOut(later.id);
      assert.deepEqual((await deliveriesOf(later.id)).filter((d) => d.endpoint_id === endpoint.id), []);
      const refused = await inject('POST', `/v1/webhook-endpoints/${endpoint.id}/deliveries/${event.id}/redeliver`);
      assert.equal(refused.status, 409);
      assert.equal(refused.body.code, 'invalid_state');
      assert.equal(failing.requests.length, 2);

      const enabled = await env.client.ok(s.updateWebhookEndpoint, { token: env.adminToken, params: { id: endpoint.id }, body: { enabled: true } });
      assert.deepEqual([enabled.enabled, enabled.disabledReason, enabled.disabledAt, enabled.failingSince], [true, null, null, null]);
    });

    it('a manual redelivery sends the same event, with the same id, once more', async () => {
      const r = await receiver();
      const endpoint = await createEndpoint(r.url, ['message.created']);
      const event = await publish('message.created', { message: { id: 'msg_1', body: 'hello' } });
      await r.waitForRequests(1);
      await waitFor('the first attempt in the log', async () => (await attemptsOf(endpoint.id)).length === 1);

      const res = await inject('POST', `/v1/webhook-endpoints/${endpoint.id}/deliveries/${event.id}/redeliver`);
      assert.equal(res.status, 202);
      assert.deepEqual(res.body, { endpointId: endpoint.id, eventId: event.id, eventType: 'message.created', status: 'pending', attempts: 1 });
      queue.wake(deliverQueue);
      const requests = await r.waitForRequests(2);
      assert.equal(requests[1]!.body, requests[0]!.body, 'the same event, byte for byte');
      assert.equal(JSON.parse(requests[1]!.body).id, event.id);
      verify(requests[1]!, endpoint.secret);
      const attempts = await waitFor('the second attempt in the log', async () => { const a = await attemptsOf(endpoint.id, event.id); return a.length === 2 && a; });
      assert.deepEqual(attempts.map((a) => [a.attempt, a.succeeded]), [[2, true], [1, true]]);

      const unknown = await inject('POST', `/v1/webhook-endpoints/${endpoint.id}/deliveries/evt_00000000000000000000000000/redeliver`);
      assert.equal(unknown.status, 404);
      const otherType = await publish('order.paid');
      const notSubscribed = await inject('POST', `/v1/webhook-endpoints/${endpoint.id}/deliveries/${otherType.id}/redeliver`);
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
      await waitFor('both delivery jobs to complete', async () => { const st = await jobStates(deliverQueue, event.id); return st.length === 2 && st.every((x) => x === 'completed'); });
      assert.equal(r.requests.length, 2);
      assert.deepEqual((await attemptsOf(endpoint.id)).map((a) => [a.attempt, a.succeeded]), [[2, true], [1, false]]);
    });
  });
}
