// What the console's support inbox, webhooks and jobs pages need of the API, on both engines: the
// staff's unread conversations, an endpoint's health, what each delivery attempt sent and got back
// (bounded, signatures left out), a delivery's next retry and payload, one queue's jobs by state
// with their data's secrets hidden, and staff refused everything admin-only.
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { forEachEngine, type TestEnv } from './support/app.ts';
import { startWebhookReceiver, type WebhookReceiver } from './support/webhook-receiver.ts';
import { waitFor } from './support/wait.ts';
import { endpoints } from '../src/client.ts';
import { enqueue } from '../src/platform/queue.ts';
import { deliverQueue } from '../src/modules/webhooks/service.ts';

async function staffUser(e: TestEnv) {
  const s = await e.customer('Staff Member');
  await e.client.ok(endpoints.updateUser, { token: e.adminToken, params: { id: s.id }, body: { role: 'staff' } });
  return s;
}

let receiver: WebhookReceiver;
// Answers 9 KiB of markup to every request: the excerpt must stop at 2 KiB and stay text.
let loud: Server;
let loudUrl: string;
before(async () => {
  receiver = await startWebhookReceiver();
  loud = createServer((req, res) => {
    req.resume();
    req.on('end', () =>
      res.writeHead(500, { 'content-type': 'text/html' }).end(`<script>alert(1)</script>${'x'.repeat(9 * 1024)}`),
    );
  });
  await new Promise<void>((resolve) => loud.listen(0, '127.0.0.1', resolve));
  loudUrl = `http://127.0.0.1:${(loud.address() as AddressInfo).port}/hooks`;
});
after(async () => {
  await receiver?.close();
  loud?.closeAllConnections();
  await new Promise<void>((resolve) => {
    if (loud) loud.close(() => resolve());
    else resolve();
  });
});

// A retry waits at least 10 minutes: a failed delivery stays pending with its next attempt ahead.
const settings = { WEBHOOK_ALLOW_PRIVATE_URLS: 'true', WEBHOOK_RETRY_DELAY_SECONDS: '600' };

forEachEngine(
  "the console's support, webhooks and jobs API",
  'one',
  (env) => {
    it('staff list the conversations they have unread; replying reads one, a new customer message makes it unread again', async () => {
      const e = env();
      const staff = await staffUser(e);
      const alice = await e.customer('Alice');
      const first = await e.client.ok(endpoints.openConversation, {
        token: alice.token,
        body: { subject: 'Parcel', body: 'Where is it?' },
      });
      const second = await e.client.ok(endpoints.openConversation, {
        token: alice.token,
        body: { subject: 'Invoice', body: 'Can I have one?' },
      });
      const unread = async (token: string) =>
        (await e.client.ok(endpoints.listConversations, { token, query: { unread: true, limit: 100 } })).data.map(
          (c) => c.id,
        );

      assert.deepEqual(await unread(staff.token), [second.id, first.id]);
      assert.deepEqual(await unread(alice.token), [], 'the customer wrote both');
      await e.client.ok(endpoints.postMessage, {
        token: staff.token,
        params: { id: first.id },
        body: { body: 'It ships today.' },
      });
      assert.deepEqual(await unread(staff.token), [second.id], 'replying marks it read for the one who replied');
      assert.deepEqual(await unread(e.adminToken), [second.id, first.id], "read state is each staff member's own");
      assert.deepEqual(await unread(alice.token), [first.id]);
      await e.client.ok(endpoints.postMessage, {
        token: alice.token,
        params: { id: first.id },
        body: { body: 'Thanks!' },
      });
      assert.deepEqual(await unread(staff.token), [first.id, second.id].sort().reverse());
      await e.client.ok(endpoints.markConversationRead, { token: staff.token, params: { id: second.id }, body: {} });
      assert.deepEqual(await unread(staff.token), [first.id]);
      const page = await e.client.ok(endpoints.listConversations, {
        token: staff.token,
        query: { unread: true, limit: 1 },
      });
      assert.equal(page.data.length, 1);
      assert.equal(page.nextCursor, null);
    });

    it('an endpoint shows its health, each attempt what it sent and the first 2 KiB of the answer, and a delivery its next retry and payload', async () => {
      const e = env();
      const created = await e.client.ok(endpoints.createWebhookEndpoint, {
        token: e.adminToken,
        body: { url: loudUrl, events: ['message.created'] },
      });
      const fresh = await e.client.ok(endpoints.getWebhookEndpoint, {
        token: e.adminToken,
        params: { id: created.id },
      });
      assert.equal(fresh.lastSuccessAt, null);
      assert.equal(fresh.lastFailureAt, null);
      assert.equal(fresh.failingDeliveries, 0);

      const customer = await e.customer();
      await e.client.ok(endpoints.openConversation, {
        token: customer.token,
        body: { subject: 'Hooks', body: 'please' },
      });
      const [attempt] = await waitFor('the failed attempt', async () => {
        const page = await e.client.ok(endpoints.listDeliveryAttempts, {
          token: e.adminToken,
          params: { id: created.id },
        });
        return page.data.length > 0 ? page.data : undefined;
      });
      assert.equal(attempt!.succeeded, false);
      assert.equal(attempt!.statusCode, 500);
      assert.ok(
        attempt!.responseBodyExcerpt!.startsWith('<script>alert(1)</script>'),
        'stored as the receiver sent it: the console shows it as text',
      );
      assert.equal(Buffer.byteLength(attempt!.responseBodyExcerpt!), 2048);
      assert.equal(attempt!.responseBodyTruncated, true);
      const headers = attempt!.requestHeaders!;
      assert.equal(headers['webhook-id'], attempt!.eventId);
      assert.equal(headers['content-type'], 'application/json');
      assert.equal(headers['webhook-signature'], '(not kept)');
      assert.equal(headers['engine-room-signature'], '(not kept)');
      assert.ok(!JSON.stringify(attempt).includes(created.secret.slice(6, 20)), 'no part of the secret');

      const failing = await e.client.ok(endpoints.getWebhookEndpoint, {
        token: e.adminToken,
        params: { id: created.id },
      });
      assert.ok(failing.lastFailureAt);
      assert.equal(failing.failingDeliveries, 1);
      assert.equal(
        (await e.client.ok(endpoints.listWebhookEndpoints, { token: e.adminToken })).data.find(
          (w) => w.id === created.id,
        )?.failingDeliveries,
        1,
      );

      const delivery = await waitFor('the retry to be scheduled', async () => {
        const d = await e.client.ok(endpoints.getWebhookDelivery, {
          token: e.adminToken,
          params: { id: created.id, eventId: attempt!.eventId },
        });
        return d.nextAttemptAt ? d : undefined;
      });
      assert.equal(delivery.status, 'pending');
      assert.equal(delivery.attempts, 1);
      assert.equal(delivery.eventType, 'message.created');
      assert.ok(
        Date.parse(delivery.nextAttemptAt!) > Date.now() + 5 * 60_000,
        "the backoff's first retry is 10 to 20 minutes ahead",
      );
      const payload = JSON.parse(delivery.payload) as { id: string; type: string; data: { message: { body: string } } };
      assert.equal(payload.id, attempt!.eventId);
      assert.equal(payload.data.message.body, 'please');

      // Pointed at a receiver that answers 200, and redelivered: the health turns.
      await e.client.ok(endpoints.updateWebhookEndpoint, {
        token: e.adminToken,
        params: { id: created.id },
        body: { url: receiver.url },
      });
      const before = receiver.requests.length;
      await e.client.ok(endpoints.redeliverEvent, {
        token: e.adminToken,
        params: { id: created.id, eventId: attempt!.eventId },
      });
      const received = (await receiver.waitForRequests(before + 1))[before];
      assert.equal(received!.body, delivery.payload, 'the payload shown is the body sent, byte for byte');
      const healthy = await waitFor('the success to count', async () => {
        const w = await e.client.ok(endpoints.getWebhookEndpoint, { token: e.adminToken, params: { id: created.id } });
        return w.lastSuccessAt ? w : undefined;
      });
      assert.equal(healthy.failingDeliveries, 0);
      assert.equal(healthy.failingSince, null);
      const done = await e.client.ok(endpoints.getWebhookDelivery, {
        token: e.adminToken,
        params: { id: created.id, eventId: attempt!.eventId },
      });
      assert.equal(done.status, 'succeeded');
      assert.equal(done.nextAttemptAt, null);
      const [latest] = (
        await e.client.ok(endpoints.listDeliveryAttempts, {
          token: e.adminToken,
          params: { id: created.id },
          query: { limit: 1 },
        })
      ).data;
      assert.equal(latest!.responseBodyExcerpt, 'ok');
      assert.equal(latest!.responseBodyTruncated, false);

      const unknown = await e.client.call(endpoints.getWebhookDelivery, {
        token: e.adminToken,
        params: { id: created.id, eventId: 'evt_00000000000000000000000000' },
      });
      assert.equal(unknown.status, 404);
    });

    it("an admin lists one queue's jobs by state, newest first, page by page, with secrets in their data hidden", async () => {
      const e = env();
      // Waiting an hour, so that no worker takes them while the test reads.
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        ids.push(
          (await e.database.db.transaction((tx) =>
            enqueue(
              tx,
              deliverQueue,
              {
                endpointId: `whe_test${i}`,
                eventId: 'evt_x',
                round: 1,
                cardToken: 'tok_secret',
                nested: { password: 'hunter2' },
              },
              { startAfter: 3600 },
            ),
          ))!,
        );
      }
      const first = await e.client.ok(endpoints.listQueueJobs, {
        token: e.adminToken,
        params: { queue: deliverQueue },
        query: { state: 'waiting', limit: 2 },
      });
      assert.equal(first.data.length, 2);
      assert.ok(first.nextCursor);
      const second = await e.client.ok(endpoints.listQueueJobs, {
        token: e.adminToken,
        params: { queue: deliverQueue },
        query: { state: 'waiting', limit: 2, cursor: first.nextCursor! },
      });
      const listed = [...first.data, ...second.data].filter((j) => ids.includes(j.id));
      assert.deepEqual(
        listed.map((j) => j.id),
        [...ids].reverse(),
        'newest first, each once',
      );
      const job = listed[0]!;
      assert.equal(job.state, 'waiting');
      assert.equal(job.queue, deliverQueue);
      assert.deepEqual(job.data, {
        endpointId: 'whe_test2',
        eventId: 'evt_x',
        round: 1,
        cardToken: '[redacted]',
        nested: { password: '[redacted]' },
      });
      assert.ok(Date.parse(job.startAfter) > Date.now() + 30 * 60_000);
      assert.ok(!JSON.stringify([first, second]).includes('tok_secret'));
      const one = await e.client.ok(endpoints.getJob, { token: e.adminToken, params: { id: job.id } });
      assert.deepEqual(one.data, job.data);

      const completed = await e.client.ok(endpoints.listQueueJobs, {
        token: e.adminToken,
        params: { queue: deliverQueue },
        query: { state: 'completed' },
      });
      assert.ok(completed.data.every((j) => j.state === 'completed'));
      const noQueue = await e.client.call(endpoints.listQueueJobs, {
        token: e.adminToken,
        params: { queue: 'no.such.queue' },
        query: { state: 'waiting' },
      });
      assert.equal(noQueue.status, 404);
      const badState = await e.client.call(endpoints.listQueueJobs, {
        token: e.adminToken,
        params: { queue: deliverQueue },
        query: { state: 'exploded' as 'waiting' },
      });
      assert.equal(badState.status, 400);
      const badCursor = await e.client.call(endpoints.listQueueJobs, {
        token: e.adminToken,
        params: { queue: deliverQueue },
        query: { state: 'waiting', cursor: 'bm90IGEgY3Vyc29y' },
      });
      assert.equal(badCursor.status, 400);
      await e.database.db.query(`DELETE FROM pgboss.job WHERE name = $1 AND id = ANY($2::uuid[])`, [deliverQueue, ids]);
    });

    it('staff are refused the admin-only endpoints of these pages', async () => {
      const e = env();
      const staff = await staffUser(e);
      const w = await e.client.ok(endpoints.createWebhookEndpoint, {
        token: e.adminToken,
        body: { url: receiver.url, events: ['order.paid'] },
      });
      const refused = [
        await e.client.call(endpoints.listQueueJobs, {
          token: staff.token,
          params: { queue: deliverQueue },
          query: { state: 'waiting' },
        }),
        await e.client.call(endpoints.listWebhookEndpoints, { token: staff.token }),
        await e.client.call(endpoints.getWebhookDelivery, {
          token: staff.token,
          params: { id: w.id, eventId: 'evt_00000000000000000000000000' },
        }),
        await e.client.call(endpoints.rotateWebhookSecret, {
          token: staff.token,
          params: { id: w.id },
          body: { gracePeriodSeconds: 60 },
        }),
        await e.client.call(endpoints.updateWebhookEndpoint, {
          token: staff.token,
          params: { id: w.id },
          body: { enabled: false },
        }),
        await e.client.call(endpoints.listFailedJobs, { token: staff.token }),
      ];
      assert.deepEqual(
        refused.map((r) => r.status),
        [403, 403, 403, 403, 403, 403],
      );
      assert.equal(
        (await e.client.ok(endpoints.getWebhookEndpoint, { token: e.adminToken, params: { id: w.id } })).enabled,
        true,
      );
    });
  },
  settings,
  { workers: true },
);
