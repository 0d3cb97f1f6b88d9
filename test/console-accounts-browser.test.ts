// The console's Customers and "API keys and staff" pages in a real browser, on both engines: an
// admin finds a customer, disables them (their session stops working through the API) and enables
// them again; creates an API key (shown once) and revokes it; a staff member reaches neither page's
// data nor actions, and the API refuses them too. On every page: no serious or critical axe
// violation, no sideways scroll at 390 px, no error in the browser's console.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Page } from 'playwright-core';
import { endpoints, type Client } from '../src/client.ts';
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

const password = 'correct horse battery staple';

for (const engine of engines('one')) {
  describe(`the console's customers, API keys and staff [${engine}]`, { skip: needsChromium }, () => {
    let rig: ConsoleRig;
    let api: Client;
    let customer: { id: string; token: string; email: string };
    let staff: { id: string; email: string; password: string };

    before(async () => {
      rig = await startConsoleRig(engine);
      api = rig.api;
      const stamp = Date.now();
      const c = await api.ok(endpoints.signup, {
        body: { email: `quentin.${stamp}@example.com`, password, name: 'Quentin Quill' },
      });
      customer = { id: c.user.id, token: c.token, email: c.user.email };
      await api.ok(endpoints.openConversation, {
        token: c.token,
        body: { subject: 'Where is my parcel?', body: 'Hello' },
      });
      const s = await api.ok(endpoints.signup, {
        body: { email: `stella.${stamp}@example.com`, password, name: 'Stella Staff' },
      });
      await api.ok(endpoints.updateUser, { token: rig.adminToken, params: { id: s.user.id }, body: { role: 'staff' } });
      staff = { id: s.user.id, email: s.user.email, password };
    });

    after(async () => {
      await rig?.close();
    });

    async function checkPage(page: Page, what: string) {
      assert.deepEqual(await accessibilityProblems(page), [], what);
      await page.setViewportSize({ width: 390, height: 844 });
      await noSidewaysScroll(page);
      assert.deepEqual(await accessibilityProblems(page), [], `${what} at 390 px`);
      await page.setViewportSize({ width: 1280, height: 900 });
    }

    it('an admin finds a customer, disables them (their session stops working) and enables them again', async () => {
      const page = await rig.newPage();
      await signIn(page, rig.baseUrl, rig.admin);
      await page.getByRole('heading', { name: 'Operations' }).waitFor();
      await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Customers' }).click();
      await page.getByRole('heading', { name: 'Customers' }).waitFor();
      await page.getByLabel('Email or name starts with').fill('QUENT');
      await page.getByRole('button', { name: 'Search' }).click();
      const table = page.getByRole('table', { name: /Users matching/ });
      await table.getByRole('link', { name: 'Quentin Quill' }).waitFor();
      await checkPage(page, 'customers');
      await table.getByRole('link', { name: 'Quentin Quill' }).click();
      await page.getByRole('heading', { name: 'Quentin Quill' }).waitFor();
      await page
        .getByRole('table', { name: 'Their conversations, newest first' })
        .getByText('Where is my parcel?')
        .waitFor();
      await page.getByRole('table', { name: 'Their sessions, newest first' }).getByText('live').waitFor();
      await checkPage(page, 'a customer');

      assert.equal((await api.call(endpoints.me, { token: customer.token })).status, 200);
      await page.getByRole('button', { name: 'Disable account' }).click();
      const dialog = page.getByRole('dialog');
      await dialog.getByRole('button', { name: 'Disable' }).click();
      await page.getByTestId('user-status').getByText('Disabled').waitFor();
      const refused = await api.call(endpoints.me, { token: customer.token });
      assert.equal(refused.status, 401, 'their session stopped working');
      const login = await api.call(endpoints.login, { body: { email: customer.email, password } });
      assert.equal(login.status, 403);
      assert.equal((login.body as { code: string }).code, 'account_disabled');

      await page.getByRole('button', { name: 'Enable account' }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Enable' }).click();
      await page.getByTestId('user-status').getByText('Active').waitFor();
      assert.equal((await api.call(endpoints.login, { body: { email: customer.email, password } })).status, 200);
      assert.deepEqual(rig.consoleErrors, []);
    });

    it('an admin creates an API key, shown once, and revokes it', async () => {
      const page = await rig.newPage();
      await signIn(page, rig.baseUrl, rig.admin);
      await page.getByRole('heading', { name: 'Operations' }).waitFor();
      await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'API keys and staff' }).click();
      await page.getByRole('heading', { name: 'API keys and staff' }).waitFor();
      await page.getByRole('table', { name: 'Staff and admins' }).getByRole('link', { name: 'Stella Staff' }).waitFor();
      await page.getByLabel('Name', { exact: true }).fill('browser storefront');
      await page.getByLabel('Role', { exact: true }).selectOption('staff');
      await page.getByRole('button', { name: 'Create key' }).click();
      const secret = (await page.getByTestId('new-key-secret').innerText()).trim();
      assert.match(secret, /^erk_/);
      assert.equal((await api.call(endpoints.me, { token: secret })).status, 200, 'the key works');
      await checkPage(page, 'API keys and staff');
      await page.getByRole('button', { name: 'I have copied it' }).click();
      assert.equal(await page.getByTestId('new-key').count(), 0, 'the key is gone from the page');
      await page.reload();
      await page.getByRole('heading', { name: 'API keys and staff' }).waitFor();
      assert.doesNotMatch(await page.locator('main').innerText(), new RegExp(secret), 'never shown again');

      await page.getByRole('button', { name: 'Revoke the key browser storefront' }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
      await waitFor('the key to show as revoked', async () =>
        (await page.getByRole('button', { name: 'Revoke the key browser storefront' }).count()) === 0
          ? true
          : undefined,
      );
      assert.equal((await api.call(endpoints.me, { token: secret })).status, 401, 'the revoked key is refused');
      assert.deepEqual(rig.consoleErrors, []);
    });

    it('a staff member sees neither page in the navigation, gets "admins only" at their addresses, and the API refuses them', async () => {
      const page = await rig.newPage();
      const adminCalls: string[] = [];
      page.on('request', (r) => {
        if (/\/v1\/(users|api-keys)/.test(r.url())) adminCalls.push(r.url());
      });
      await signIn(page, rig.baseUrl, staff);
      await page.getByRole('heading', { name: 'Operations' }).waitFor();
      const nav = page.getByRole('navigation', { name: 'Console' });
      assert.equal(await nav.getByRole('link', { name: 'Customers' }).count(), 0);
      assert.equal(await nav.getByRole('link', { name: 'API keys and staff' }).count(), 0);
      for (const [path, heading] of [
        ['/console/customers', 'Customers'],
        [`/console/customers/${customer.id}`, 'Customer'],
        ['/console/access', 'API keys and staff'],
      ] as const) {
        await page.goto(`${rig.baseUrl}${path}`);
        await page.getByRole('heading', { name: heading, exact: true }).waitFor();
        await page.getByText(/admins only/).waitFor();
        assert.equal(await page.getByRole('button', { name: /Disable|Create key|Revoke/ }).count(), 0);
        await checkPage(page, `${path} as staff`);
      }
      assert.deepEqual(adminCalls, [], 'the pages asked the API for nothing');
      const token = (await api.ok(endpoints.login, { body: { email: staff.email, password: staff.password } })).token;
      assert.equal((await api.call(endpoints.listUsers, { token, query: { limit: 5 } })).status, 403);
      assert.equal((await api.call(endpoints.disableUser, { token, params: { id: customer.id } })).status, 403);
      assert.equal(
        (await api.call(endpoints.createApiKey, { token, body: { name: 'mine', role: 'admin' } })).status,
        403,
      );
      assert.equal(
        (await api.call(endpoints.listUserSessions, { token, params: { id: customer.id }, query: { limit: 5 } }))
          .status,
        403,
      );
      assert.deepEqual(rig.consoleErrors, []);
    });
  });
}
