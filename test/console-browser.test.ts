// The console in a real browser (Chromium, driven by Playwright) against a real `engine-room
// start`, on both engines: signing in, figures that change as orders are placed, a dead letter
// made by an outage and retried from the page with the keyboard, the audit run from the page, a
// customer and an anonymous visitor kept out, staff told what only admins may do. On every page:
// no serious or critical accessibility violation (axe), readable at 1280 and 390 px wide, and no
// error in the browser's console.
//
// CONSOLE_SCREENSHOTS=1 also writes the screenshots of the README and docs (docs/images/), from
// the run on the file's one engine: `npm run screenshots`.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { endpoints, type Client } from '../src/client.ts';
import { packageRoot } from '../src/platform/paths.ts';
import { engines } from './support/database.ts';
import {
  accessibilityProblems,
  needsChromium,
  noSidewaysScroll,
  signIn,
  startConsoleRig,
  type ConsoleRig,
} from './support/console-browser.ts';
import { waitFor } from './support/wait.ts';

const screenshots = process.env.CONSOLE_SCREENSHOTS ? join(packageRoot, 'docs', 'images') : null;

for (const engine of engines('one')) {
  describe(`the console in a browser [${engine}]`, { skip: needsChromium }, () => {
    let rig: ConsoleRig;
    let baseUrl: string;
    let api: Client;
    let adminToken: string;
    let admin: { email: string; password: string };
    let customer: { token: string; email: string; password: string };
    const newPage = (width?: number, height?: number): Promise<Page> => rig.newPage(width, height);

    before(async () => {
      rig = await startConsoleRig(engine);
      ({ baseUrl, api, adminToken, admin } = rig);
      await api.ok(endpoints.createProduct, {
        token: adminToken,
        body: {
          name: 'Console tee',
          variants: [{ sku: 'CONSOLE-TEE', price: { amount: 2500, currency: 'EUR' }, stock: 500 }],
        },
      });
      const password = 'correct horse battery staple';
      const email = `console-customer-${Date.now()}@example.com`;
      customer = {
        token: (await api.ok(endpoints.signup, { body: { email, password, name: 'Carla Customer' } })).token,
        email,
        password,
      };
    });

    after(async () => {
      await rig?.close();
    });

    let orderKey = 0;
    const placeOrder = (card: string) =>
      api.ok(endpoints.placeOrder, {
        token: customer.token,
        idempotencyKey: `browser-${engine}-${++orderKey}`,
        body: { lines: [{ sku: 'CONSOLE-TEE', quantity: 1 }], payment: { method: 'card', token: card } },
      });

    it('an anonymous visitor gets the sign-in page, and a customer a clear "not allowed", never data', async () => {
      const page = await newPage();
      const overviewCalls: string[] = [];
      page.on('request', (r) => {
        if (r.url().includes('/v1/admin/')) overviewCalls.push(r.url());
      });
      await page.goto(`${baseUrl}/console`);
      await page.getByRole('heading', { name: 'Engine Room console' }).waitFor();
      assert.deepEqual(await accessibilityProblems(page), []);
      await signIn(page, baseUrl, customer);
      await page.getByRole('heading', { name: 'Not allowed' }).waitFor();
      assert.match(await page.locator('main').innerText(), /for the shop's staff and admins/);
      assert.deepEqual(await accessibilityProblems(page), []);
      assert.deepEqual(overviewCalls, [], "a customer's page asks for no operations data");
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByRole('button', { name: 'Sign in' }).waitFor();
    });

    it('an admin signs in and sees the figures change as orders are placed, live', async () => {
      const page = await newPage();
      await signIn(page, baseUrl, admin);
      await page.getByRole('heading', { name: 'Operations' }).waitFor();
      const placed = page.getByTestId('stat-orders');
      await placed.waitFor();
      const before = await placed.innerText();
      for (let i = 0; i < 3; i++) await placeOrder('tok_ok');
      // No reload: the page refreshes itself.
      await waitFor(
        'the orders to show on the page',
        async () => ((await placed.innerText()) !== before ? true : undefined),
        45_000,
      );
      await waitFor(
        'the paid orders to show',
        async () => (/Paid\s+[1-9]/.test(await page.getByTestId('stat-paid').innerText()) ? true : undefined),
        45_000,
      );
      assert.match(await page.getByRole('table', { name: /live process/ }).innerText(), /api \+ worker/);
      assert.deepEqual(await accessibilityProblems(page), []);
      await noSidewaysScroll(page);
      // A reload keeps the session (the cookie) and gets its CSRF token back from the API.
      await page.reload();
      await page.getByRole('heading', { name: 'Operations' }).waitFor();
      if (screenshots) {
        await mkdir(screenshots, { recursive: true });
        await page.getByTestId('stat-paid').waitFor();
        await page.screenshot({ path: join(screenshots, 'console-operations.png'), fullPage: true });
      }
    });

    it('a dead letter appears during an outage, and the admin retries it from the page with the keyboard', async () => {
      await api.ok(endpoints.startSandboxOutage, { token: adminToken, body: { seconds: 300 } });
      const order = await placeOrder('tok_drill');
      const page = await newPage();
      await signIn(page, baseUrl, admin);
      await page.getByText('is in an outage').first().waitFor({ timeout: 30_000 });
      const deadLetters = page.getByRole('table', { name: 'Jobs that ran out of attempts, latest first' });
      await deadLetters.getByText('processor_unavailable').first().waitFor({ timeout: 45_000 });
      // The list is read when the page opens; the headline follows at the next refresh.
      await waitFor('the headline to count the dead letter', async () =>
        /Dead letters\s+[1-9]/.test(await page.getByTestId('stat-dead').innerText()) ? true : undefined,
      );
      if (screenshots) await page.screenshot({ path: join(screenshots, 'console-incident.png'), fullPage: true });
      assert.deepEqual(await accessibilityProblems(page), []);

      await api.ok(endpoints.endSandboxOutage, { token: adminToken });
      const retry = deadLetters.getByRole('button', { name: /^Retry job / }).first();
      await retry.focus();
      await page.keyboard.press('Enter');
      const dialog = page.getByRole('dialog', { name: 'Send this job back to its queue?' });
      await dialog.waitFor();
      assert.deepEqual(await accessibilityProblems(page), []);
      await page.keyboard.press('Tab'); // from Cancel, which has the focus, to Retry
      await page.keyboard.press('Enter');
      await page.getByRole('heading', { name: 'Sent back' }).waitFor();
      await page.getByRole('status').filter({ hasText: /^Done/ }).waitFor({ timeout: 45_000 });
      await waitFor('the order to be paid', async () =>
        (await api.ok(endpoints.getOrder, { token: customer.token, params: { id: order.id } })).status === 'paid'
          ? true
          : undefined,
      );
      await deadLetters.getByText('No dead letters').waitFor({ timeout: 30_000 });
    });

    it('the audit runs from the page and says the books add up', async () => {
      const page = await newPage();
      await signIn(page, baseUrl, admin);
      await page.getByRole('button', { name: 'Run the audit now' }).click();
      await waitFor('a fresh verdict', async () =>
        /Clean\s+Ran (\d+ s|<1 s) ago/.test(await page.getByTestId('audit-verdict').innerText()) ? true : undefined,
      );
      const checks = page.locator('.checks li');
      assert.ok((await checks.count()) >= 7);
      assert.equal(await page.locator('.checks .tone-bad').count(), 0);
      // The balances are a read of their own: wait for them (the table says "Loading…" until then).
      await page
        .getByRole('table', { name: /Ledger balances/ })
        .getByText('processor_clearing')
        .first()
        .waitFor();
    });

    it('reads at 390 px wide, without sideways scrolling or accessibility problems', async () => {
      const page = await newPage(390, 844);
      await signIn(page, baseUrl, admin);
      await page.getByRole('heading', { name: 'Operations' }).waitFor();
      await page.getByTestId('stat-orders').waitFor();
      await noSidewaysScroll(page);
      assert.deepEqual(await accessibilityProblems(page), []);
      if (screenshots) await page.screenshot({ path: join(screenshots, 'console-operations-390.png'), fullPage: true });
    });

    it('a staff member sees the figures, and what only admins may do says so', async () => {
      const staff = { email: `console-staff-${Date.now()}@example.com`, password: 'staff member password' };
      const signedUp = await api.ok(endpoints.signup, { body: { ...staff, name: 'Sam Staff' } });
      await api.ok(endpoints.updateUser, {
        token: adminToken,
        params: { id: signedUp.user.id },
        body: { role: 'staff' },
      });
      const page = await newPage();
      await signIn(page, baseUrl, staff);
      await page.getByTestId('stat-orders').waitFor();
      assert.match(await page.locator('main').innerText(), /Listing and retrying dead letters: admins only/);
      assert.equal(await page.getByRole('button', { name: 'Run the audit now' }).count(), 0);
      assert.deepEqual(await accessibilityProblems(page), []);
    });

    it('wrote no error to the browser console on any page', () => {
      assert.deepEqual(rig.consoleErrors, []);
    });
  });
}
