// The console's support inbox, webhooks and jobs pages in a real browser against a real `engine-room
// start`, on both engines: staff answer a customer, who sees the answer on their own event stream;
// a customer's new message shows in the inbox without a reload; an admin redelivers a failed
// webhook to a local receiver, and rotates the signing secret (a delivery then verifies with the old
// and the new secret); a queue's jobs by state; a staff member kept out of the admin-only pages, and
// the API refusing them too. On every page: no serious or critical axe violation, 390 px without
// sideways scrolling, no error in the browser's console.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Page } from 'playwright-core';
import { Webhook } from 'standardwebhooks';
import { endpoints, type Client } from '../src/client.ts';
import { openEventStream } from './support/event-source.ts';
import { engines } from './support/database.ts';
import {
  accessibilityProblems,
  needsChromium,
  noSidewaysScroll,
  signIn,
  startConsoleRig,
  type ConsoleRig,
} from './support/console-browser.ts';
import { startWebhookReceiver, type ReceivedRequest, type WebhookReceiver } from './support/webhook-receiver.ts';
import { waitFor } from './support/wait.ts';

/** The Standard Webhooks check, by the package receivers use: answers the parsed body, or throws. */
function verifyStandard(request: ReceivedRequest, secret: string): unknown {
  const headers = Object.fromEntries(Object.entries(request.headers).map(([k, v]) => [k, String(v)]));
  return new Webhook(secret).verify(request.body, headers);
}

for (const engine of engines('one')) {
  describe(`the console's support inbox, webhooks and jobs in a browser [${engine}]`, { skip: needsChromium }, () => {
    let rig: ConsoleRig;
    let api: Client;
    let adminToken: string;
    let receiver: WebhookReceiver;
    let customer: { token: string; id: string };
    let staff: { email: string; password: string; token: string };
    const pages: Page[] = [];
    const newPage = async (width?: number, height?: number) => {
      const page = await rig.newPage(width, height);
      pages.push(page);
      return page;
    };

    before(async () => {
      receiver = await startWebhookReceiver();
      // The receiver listens on 127.0.0.1; a failed delivery's retry waits 10 minutes or more, so
      // that only the redelivery from the page sends it again.
      rig = await startConsoleRig(engine, { WEBHOOK_ALLOW_PRIVATE_URLS: 'true', WEBHOOK_RETRY_DELAY_SECONDS: '600' });
      ({ api, adminToken } = rig);
      const signedUp = await api.ok(endpoints.signup, {
        body: {
          email: `support-customer-${Date.now()}@example.com`,
          password: 'correct horse battery staple',
          name: 'Cora Customer',
        },
      });
      customer = { token: signedUp.token, id: signedUp.user.id };
      const staffLogin = { email: `support-staff-${Date.now()}@example.com`, password: 'staff member password' };
      const staffUser = await api.ok(endpoints.signup, { body: { ...staffLogin, name: 'Sam Staff' } });
      await api.ok(endpoints.updateUser, {
        token: adminToken,
        params: { id: staffUser.user.id },
        body: { role: 'staff' },
      });
      staff = { ...staffLogin, token: (await api.ok(endpoints.login, { body: staffLogin })).token };
    });

    after(async () => {
      // Pages first: their event streams end before the engine stops.
      for (const page of pages) await page.close().catch(() => {});
      await rig?.close();
      await receiver?.close();
    });

    it('staff reply to a customer from the inbox, and the customer sees it on their event stream', async () => {
      const opened = await api.ok(endpoints.openConversation, {
        token: customer.token,
        body: { subject: 'Where is my parcel?', body: 'I ordered on Monday.' },
      });
      const stream = await openEventStream(`${rig.baseUrl}/v1/events`, { authorization: `Bearer ${customer.token}` });
      try {
        assert.equal(stream.status, 200);
        await stream.next((e) => e.event === 'ready');
        const page = await newPage();
        await signIn(page, rig.baseUrl, staff);
        await page.getByRole('link', { name: 'Support inbox' }).click();
        await page.getByRole('heading', { name: 'Support inbox' }).waitFor();
        const inbox = page.getByRole('navigation', { name: 'Conversations' });
        const entry = inbox.getByRole('link', { name: /Where is my parcel\?/ });
        await entry.waitFor();
        assert.match(await entry.innerText(), /1 unread/);
        await entry.click();
        await page.getByRole('heading', { name: 'Where is my parcel?' }).waitFor();
        await page.getByRole('list', { name: 'Messages' }).getByText('I ordered on Monday.').waitFor();
        await page.getByRole('button', { name: 'Mark read (1)' }).click();
        await page.getByText('Read', { exact: true }).waitFor();
        await waitFor('the list to count it read', async () =>
          /unread/.test(await entry.innerText()) ? undefined : true,
        );
        assert.deepEqual(await accessibilityProblems(page), []);

        await page.getByLabel('Reply').fill('It ships today: <b>tracking</b> follows.');
        await page.getByRole('button', { name: 'Send reply' }).click();
        const shown = page
          .getByRole('list', { name: 'Messages' })
          .getByText('It ships today: <b>tracking</b> follows.');
        await shown.waitFor();
        const frame = await stream.next(
          (e) =>
            e.event === 'message.created' &&
            (JSON.parse(e.data) as { data: { message: { fromStaff: boolean } } }).data.message.fromStaff,
        );
        const data = (JSON.parse(frame.data) as { data: { message: { body: string; conversationId: string } } }).data;
        assert.equal(data.message.body, 'It ships today: <b>tracking</b> follows.');
        assert.equal(data.message.conversationId, opened.id);
        const messages = await api.ok(endpoints.listMessages, { token: customer.token, params: { id: opened.id } });
        assert.equal(messages.data.length, 2, 'one reply, posted once');

        // A new message of the customer, in the open conversation and in a new one: no reload.
        await api.ok(endpoints.postMessage, {
          token: customer.token,
          params: { id: opened.id },
          body: { body: 'Thank you!' },
        });
        await page.getByRole('list', { name: 'Messages' }).getByText('Thank you!').waitFor({ timeout: 30_000 });
        await api.ok(endpoints.openConversation, {
          token: customer.token,
          body: { subject: 'A second question', body: 'Do you ship to Norway?' },
        });
        const second = inbox.getByRole('link', { name: /A second question/ });
        await second.waitFor({ timeout: 30_000 });
        assert.match(await second.innerText(), /1 unread/);
        const order = await inbox.getByRole('link').allInnerTexts();
        assert.match(order[0]!, /A second question|Where is my parcel/);
        assert.ok(
          order.slice(0, 2).every((t) => /unread/.test(t)),
          'the unread conversations come first',
        );
        assert.deepEqual(await accessibilityProblems(page), []);
      } finally {
        stream.close();
      }
    });

    it('the inbox reads at 390 px wide', async () => {
      const page = await newPage(390, 844);
      await signIn(page, rig.baseUrl, staff);
      await page.getByRole('link', { name: 'Support inbox' }).click();
      await page.getByRole('navigation', { name: 'Conversations' }).getByRole('link').first().click();
      await page.getByLabel('Reply').waitFor();
      await noSidewaysScroll(page);
      assert.deepEqual(await accessibilityProblems(page), []);
    });

    let endpointId: string;
    let firstSecret: string;

    it('an admin registers an endpoint, sees it failing, and redelivers the failed event to the receiver', async () => {
      receiver.failNext(1);
      const page = await newPage();
      await signIn(page, rig.baseUrl, rig.admin);
      await page.getByRole('link', { name: 'Webhooks' }).click();
      await page.getByRole('button', { name: 'New endpoint' }).click();
      const register = page.getByRole('dialog', { name: 'Register a webhook endpoint' });
      await register.getByLabel('URL').fill(receiver.url);
      await register.getByLabel('Every event, including types added later').uncheck();
      await register.getByLabel('message.created').check();
      assert.deepEqual(await accessibilityProblems(page), []);
      await register.getByRole('button', { name: 'Register' }).click();
      firstSecret = (await page.getByTestId('new-secret').innerText()).trim();
      assert.match(firstSecret, /^whsec_/);
      await page.getByRole('button', { name: 'I have copied it' }).click();
      const [created] = (await api.ok(endpoints.listWebhookEndpoints, { token: adminToken })).data;
      assert.equal(created!.url, receiver.url);
      assert.deepEqual(created!.events, ['message.created']);
      endpointId = created!.id;

      await api.ok(endpoints.openConversation, { token: customer.token, body: { subject: 'Hooked', body: 'Ping' } });
      await receiver.waitForRequests(1, 30_000);
      const table = page.getByRole('table', { name: 'Webhook endpoints, newest first' });
      await waitFor('the endpoint to show as failing', async () => {
        await page.reload();
        await table.waitFor();
        return /Failing since/.test(await table.innerText()) ? true : undefined;
      });
      assert.deepEqual(await accessibilityProblems(page), []);
      await table.getByRole('link', { name: receiver.url }).click();
      await page.getByRole('heading', { name: 'Webhook endpoint' }).waitFor();
      const attempts = page.getByRole('table', { name: 'Delivery attempts, newest first' });
      await attempts.getByText('nope').first().waitFor();
      await attempts.locator('summary').first().click();
      await page.getByText('next retry').waitFor();
      assert.match(await page.getByTestId('response-excerpt').first().innerText(), /^nope$/);
      assert.match(await attempts.innerText(), /webhook-signature: \(not kept\)/);
      assert.deepEqual(await accessibilityProblems(page), []);

      await attempts
        .getByRole('button', { name: /^Redeliver evt_/ })
        .first()
        .click();
      await page
        .getByRole('dialog', { name: 'Send this event again, now?' })
        .getByRole('button', { name: 'Redeliver' })
        .click();
      const [first, again] = await receiver.waitForRequests(2, 30_000);
      assert.equal(again!.headers['webhook-id'], first!.headers['webhook-id'], 'the same event, by id');
      verifyStandard(again!, firstSecret);
      await waitFor('the successful attempt to show', async () => {
        await page.getByRole('button', { name: 'Refresh' }).click();
        return /Delivering/.test(await page.locator('.facts').innerText()) &&
          (await attempts.getByText('200').count()) > 0
          ? true
          : undefined;
      });
      await noSidewaysScroll(page);
    });

    it('an admin rotates the secret with a grace period, and a delivery verifies with the old and the new secret', async () => {
      const page = await newPage(390, 844);
      await signIn(page, rig.baseUrl, rig.admin);
      await page.getByRole('link', { name: 'Support inbox' }).waitFor();
      await page.goto(`${rig.baseUrl}/console/webhooks/${endpointId}`);
      await page.getByRole('button', { name: 'Rotate secret' }).click();
      const dialog = page.getByRole('dialog', { name: 'Rotate the signing secret?' });
      await dialog.getByLabel('Grace period').selectOption({ label: '1 hour' });
      assert.deepEqual(await accessibilityProblems(page), []);
      await dialog.getByRole('button', { name: 'Rotate' }).click();
      const newSecret = (await page.getByTestId('new-secret').innerText()).trim();
      assert.match(newSecret, /^whsec_/);
      assert.notEqual(newSecret, firstSecret);
      assert.match(await page.locator('main').innerText(), /old secret keeps signing until/);
      await noSidewaysScroll(page);

      const before = receiver.requests.length;
      await api.ok(endpoints.openConversation, {
        token: customer.token,
        body: { subject: 'After the rotation', body: 'Signed twice' },
      });
      const delivered = (await receiver.waitForRequests(before + 1, 30_000))[before]!;
      assert.deepEqual((verifyStandard(delivered, firstSecret) as { type: string }).type, 'message.created');
      assert.deepEqual((verifyStandard(delivered, newSecret) as { type: string }).type, 'message.created');
      assert.throws(
        () => verifyStandard(delivered, 'whsec_' + Buffer.alloc(32, 1).toString('base64')),
        'and not with any other',
      );
      // Shown once: after a reload, the secret is gone from the page.
      await page.reload();
      await page.getByRole('heading', { name: 'Webhook endpoint' }).waitFor();
      assert.equal(await page.getByTestId('new-secret').count(), 0);
      assert.ok(!(await page.content()).includes(newSecret));
    });

    it("an admin lists a queue's jobs by state, with their data", async () => {
      const page = await newPage();
      await signIn(page, rig.baseUrl, rig.admin);
      await page.getByRole('link', { name: 'Jobs' }).click();
      await page.getByRole('heading', { name: 'Jobs' }).waitFor();
      await page.getByLabel('Queue').selectOption('webhooks.deliver');
      await page.getByLabel('State').selectOption('completed');
      const table = page.getByRole('table', { name: 'Completed jobs of webhooks.deliver, newest first' });
      await table.locator('summary').first().click();
      assert.match(await table.innerText(), /"endpointId": "whe_/);
      assert.deepEqual(await accessibilityProblems(page), []);
      await page.getByLabel('State').selectOption('dead');
      await page.getByRole('table', { name: 'Jobs that ran out of attempts, latest first' }).waitFor();
      await page.setViewportSize({ width: 390, height: 844 });
      await noSidewaysScroll(page);
    });

    it('a staff member cannot reach the admin-only pages or actions, and the API refuses them too', async () => {
      const page = await newPage();
      await signIn(page, rig.baseUrl, staff);
      await page.getByRole('link', { name: 'Support inbox' }).waitFor();
      assert.equal(await page.getByRole('link', { name: 'Webhooks' }).count(), 0);
      assert.equal(await page.getByRole('link', { name: 'Jobs' }).count(), 0);
      await page.goto(`${rig.baseUrl}/console/webhooks`);
      await page.getByText('Webhook endpoints and their deliveries: admins only').waitFor();
      await page.goto(`${rig.baseUrl}/console/webhooks/${endpointId}`);
      await page.getByText('Webhook endpoints and their deliveries: admins only').waitFor();
      assert.equal(await page.getByRole('button', { name: 'Rotate secret' }).count(), 0);
      await page.goto(`${rig.baseUrl}/console/jobs`);
      await page.getByText('Listing jobs and retrying dead letters: admins only').waitFor();
      assert.deepEqual(await accessibilityProblems(page), []);

      const refused = [
        await api.call(endpoints.listWebhookEndpoints, { token: staff.token }),
        await api.call(endpoints.rotateWebhookSecret, {
          token: staff.token,
          params: { id: endpointId },
          body: { gracePeriodSeconds: 0 },
        }),
        await api.call(endpoints.updateWebhookEndpoint, {
          token: staff.token,
          params: { id: endpointId },
          body: { enabled: false },
        }),
        await api.call(endpoints.listQueueJobs, {
          token: staff.token,
          params: { queue: 'webhooks.deliver' },
          query: { state: 'waiting' },
        }),
        await api.call(endpoints.listFailedJobs, { token: staff.token }),
      ];
      assert.deepEqual(
        refused.map((r) => r.status),
        [403, 403, 403, 403, 403],
      );
    });

    it('wrote no error to the browser console on any page', () => {
      assert.deepEqual(rig.consoleErrors, []);
    });
  });
}
