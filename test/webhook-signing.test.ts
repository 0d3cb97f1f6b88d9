// Webhook signatures as a receiver checks them, on both engines, with real deliveries to a real
// receiver: the Standard Webhooks headers verified by the `standardwebhooks` package (what
// receivers are told to use), the deprecated Engine-Room-Signature alongside, secrets from before
// the Standard Webhooks scheme, and secret rotation: the old secret verifies during the grace period
// the admin chose and not after it, a retried rotation rotates once, two rotations at once hand out
// one secret.
import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { engines } from './support/database.ts';
import { startTestEnv, type TestEnv } from './support/app.ts';
import { startWebhookReceiver, type ReceivedRequest, type WebhookReceiver } from './support/webhook-receiver.ts';
import { waitFor } from './support/wait.ts';
import { publishEvent } from '../src/platform/events.ts';
import { declareQueues, startQueue, type Queue } from '../src/platform/queue.ts';
import { registerWebhookWorkers, webhookQueuesFor, type WebhookOptions } from '../src/modules/webhooks/delivery.ts';
import * as s from '../src/modules/webhooks/schemas.ts';

const options: WebhookOptions = { retryDelaySeconds: 1, retryLimit: 2, concurrency: 4, allowPrivateUrls: true };

/** The Standard Webhooks check, by the package receivers use: answers the parsed body, or throws. */
function verifyStandard(request: ReceivedRequest, secret: string): unknown {
  const headers = Object.fromEntries(Object.entries(request.headers).map(([k, v]) => [k, String(v)]));
  return new Webhook(secret).verify(request.body, headers);
}

/** The legacy Engine-Room-Signature check, as docs/WEBHOOKS.md tells receivers: any v1 entry that matches. */
function verifyLegacy(request: ReceivedRequest, secret: string): boolean {
  const parts = String(request.headers['engine-room-signature'] ?? '')
    .split(',')
    .map((p) => p.split('=', 2) as [string, string]);
  const t = parts.find(([k]) => k === 't')?.[1];
  const expected = createHmac('sha256', secret).update(`${t}.${request.body}`).digest();
  return parts.some(
    ([k, v]) =>
      k === 'v1' &&
      Buffer.from(v, 'hex').length === expected.length &&
      timingSafeEqual(Buffer.from(v, 'hex'), expected),
  );
}

for (const engine of engines('one')) {
  describe(`webhook signatures and secret rotation [${engine}]`, () => {
    let env: TestEnv;
    let queue: Queue;
    let receiver: WebhookReceiver;

    before(async () => {
      env = await startTestEnv(engine, { WEBHOOK_ALLOW_PRIVATE_URLS: 'true' });
      const db = env.database.db;
      await declareQueues(db, webhookQueuesFor(options));
      queue = await startQueue(db, { pollingIntervalSeconds: 0.05, maintain: false, runSchedules: false });
      registerWebhookWorkers(queue, db, options);
    });
    after(async () => {
      await queue?.stop();
      await receiver?.close();
      await env?.close();
    });
    afterEach(async () => {
      await env.database.db.query('DELETE FROM webhook_endpoints');
      await receiver?.close();
    });

    const createEndpoint = async () => {
      receiver = await startWebhookReceiver();
      return env.client.ok(s.createWebhookEndpoint, {
        token: env.adminToken,
        body: { url: receiver.url, events: ['order.paid'] },
      });
    };
    const rotate = (id: string, body: { gracePeriodSeconds?: number } = {}, headers: Record<string, string> = {}) =>
      env.app.inject({
        method: 'POST',
        url: `/v1/webhook-endpoints/${id}/rotate-secret`,
        headers: { authorization: `Bearer ${env.adminToken}`, ...headers },
        payload: body,
      });
    /** Publishes an event and answers the request the receiver got for it. */
    const deliverOne = async (): Promise<ReceivedRequest> => {
      const event = await env.database.db.transaction((tx) =>
        publishEvent(tx, 'order.paid', { order: { id: `ord_${randomBytes(4).toString('hex')}` } }, []),
      );
      return waitFor(`the delivery of ${event.id}`, async () =>
        receiver.requests.find((r) => r.headers['webhook-id'] === event.id),
      );
    };

    it('a delivery verifies with the standardwebhooks package and the new secret, and by the legacy header', async () => {
      const endpoint = await createEndpoint();
      assert.match(endpoint.secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
      const request = await deliverOne();
      const body = verifyStandard(request, endpoint.secret) as { id: string; type: string };
      assert.equal(body.id, request.headers['webhook-id']);
      assert.equal(body.type, 'order.paid');
      assert.equal(request.headers['engine-room-event-id'], body.id);
      assert.match(String(request.headers['webhook-signature']), /^v1,[A-Za-z0-9+/]{43}=$/, 'one signature');
      assert.ok(verifyLegacy(request, endpoint.secret));
      // A changed body or another secret does not verify.
      assert.throws(() =>
        verifyStandard({ ...request, body: request.body.replace('order.paid', 'order.xxxx') }, endpoint.secret),
      );
      assert.throws(() => verifyStandard(request, `whsec_${randomBytes(32).toString('base64')}`));
    });

    it('an endpoint whose secret predates the standard scheme (base64url) keeps its legacy signature and gets a standard one for the same key', async () => {
      const endpoint = await createEndpoint();
      const key = randomBytes(32);
      let body = key.toString('base64url');
      while (!/[-_]/.test(body)) body = randomBytes(32).toString('base64url'); // one with URL-safe characters
      const old = `whsec_${body}`;
      await env.database.db.query('UPDATE webhook_endpoints SET secret = $2 WHERE id = $1', [endpoint.id, old]);
      const request = await deliverOne();
      assert.ok(verifyLegacy(request, old), 'the legacy header verifies with the secret as it always did');
      // What docs/WEBHOOKS.md tells those receivers: the same secret in the standard alphabet.
      const standard = `whsec_${body.replace(/-/g, '+').replace(/_/g, '/')}=`;
      verifyStandard(request, standard);
    });

    it('after a rotation the new and the old secret verify during the grace period, and the old one fails after it', async () => {
      const endpoint = await createEndpoint();
      const res = await rotate(endpoint.id, { gracePeriodSeconds: 3600 });
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(res.headers['cache-control'], 'no-store');
      const rotated = res.json() as { id: string; secret: string; previousSecretExpiresAt: string };
      assert.deepEqual(Object.keys(rotated).sort(), ['id', 'previousSecretExpiresAt', 'secret']);
      assert.equal(rotated.id, endpoint.id);
      assert.notEqual(rotated.secret, endpoint.secret);
      const expiresIn = Date.parse(rotated.previousSecretExpiresAt) - Date.now();
      assert.ok(expiresIn > 3500_000 && expiresIn <= 3600_000, `expires in ${expiresIn} ms`);

      // The endpoint shows the rotation, never a secret.
      const view = await env.client.ok(s.getWebhookEndpoint, { token: env.adminToken, params: { id: endpoint.id } });
      assert.equal(view.previousSecretExpiresAt, rotated.previousSecretExpiresAt);
      assert.ok(view.secretRotatedAt);
      assert.ok(!JSON.stringify(view).includes('whsec_'));

      const during = await deliverOne();
      verifyStandard(during, rotated.secret);
      verifyStandard(during, endpoint.secret);
      assert.equal(String(during.headers['webhook-signature']).split(' ').length, 2);
      assert.ok(verifyLegacy(during, rotated.secret) && verifyLegacy(during, endpoint.secret));

      // The grace period ends (moved back rather than waited for).
      await env.database.db.query(
        "UPDATE webhook_endpoints SET previous_secret_expires_at = now() - interval '1 second' WHERE id = $1",
        [endpoint.id],
      );
      const after = await deliverOne();
      verifyStandard(after, rotated.secret);
      assert.throws(() => verifyStandard(after, endpoint.secret), /No matching signature/);
      assert.ok(!verifyLegacy(after, endpoint.secret));
      assert.equal(
        (await env.client.ok(s.getWebhookEndpoint, { token: env.adminToken, params: { id: endpoint.id } }))
          .previousSecretExpiresAt,
        null,
      );
    });

    it('a retry with the same Idempotency-Key answers the same secret and does not rotate again', async () => {
      const endpoint = await createEndpoint();
      const headers = { 'idempotency-key': `rotate-${randomBytes(6).toString('hex')}` };
      const first = await rotate(endpoint.id, { gracePeriodSeconds: 600 }, headers);
      const again = await rotate(endpoint.id, { gracePeriodSeconds: 600 }, headers);
      assert.equal(first.statusCode, 200);
      assert.equal(again.statusCode, 200);
      assert.equal(again.headers['idempotent-replayed'], 'true');
      assert.equal(again.headers['cache-control'], 'no-store');
      assert.equal(again.json().secret, first.json().secret);
      const request = await deliverOne();
      verifyStandard(request, first.json().secret);
      verifyStandard(request, endpoint.secret); // still the previous one: a second rotation would have dropped it
    });

    it('a rotation during a grace period is refused unless it ends every old secret at once', async () => {
      const endpoint = await createEndpoint();
      const first = (await rotate(endpoint.id, { gracePeriodSeconds: 600 })).json() as { secret: string };
      const refused = await rotate(endpoint.id, { gracePeriodSeconds: 600 });
      assert.equal(refused.statusCode, 409);
      assert.equal(refused.json().code, 'invalid_state');
      const emergency = await rotate(endpoint.id, { gracePeriodSeconds: 0 });
      assert.equal(emergency.statusCode, 200);
      const third = emergency.json() as { secret: string; previousSecretExpiresAt: null };
      assert.equal(third.previousSecretExpiresAt, null);
      const request = await deliverOne();
      verifyStandard(request, third.secret);
      for (const old of [endpoint.secret, first.secret]) assert.throws(() => verifyStandard(request, old));
      assert.equal(String(request.headers['webhook-signature']).split(' ').length, 1);
    });

    it('of two rotations at once, one rotates and the other is refused, so the secret handed out is the one in use', async () => {
      const endpoint = await createEndpoint();
      const results = await Promise.all([rotate(endpoint.id), rotate(endpoint.id)]);
      const statuses = results.map((r) => r.statusCode).sort();
      assert.deepEqual(statuses, [200, 409]);
      const winner = results.find((r) => r.statusCode === 200)!.json() as {
        secret: string;
        previousSecretExpiresAt: string;
      };
      // The default grace period is a day.
      const expiresIn = Date.parse(winner.previousSecretExpiresAt) - Date.now();
      assert.ok(expiresIn > 86_000_000 && expiresIn <= 86_400_000, `expires in ${expiresIn} ms`);
      const request = await deliverOne();
      verifyStandard(request, winner.secret);
      verifyStandard(request, endpoint.secret);
    });

    it('refuses bad grace periods, unknown endpoints and non-admins', async () => {
      const endpoint = await createEndpoint();
      for (const gracePeriodSeconds of [-1, 604_801, 1.5, '60'] as never[]) {
        const res = await rotate(endpoint.id, { gracePeriodSeconds });
        assert.equal(res.statusCode, 400, String(gracePeriodSeconds));
        assert.equal(res.json().code, 'validation_failed');
      }
      assert.equal((await rotate('whe_nope')).statusCode, 404);
      const customer = await env.customer();
      const forbidden = await rotate(endpoint.id, {}, { authorization: `Bearer ${customer.token}` });
      assert.equal(forbidden.statusCode, 403);
      // Nothing was rotated by any of these.
      assert.equal(
        (await env.client.ok(s.getWebhookEndpoint, { token: env.adminToken, params: { id: endpoint.id } }))
          .secretRotatedAt,
        null,
      );
    });
  });
}
