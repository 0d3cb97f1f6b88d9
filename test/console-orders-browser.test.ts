// The console's orders, catalog and stock pages in a real browser (Chromium, playwright-core)
// against a real `engine-room start`, on both engines: an order found by its customer's email,
// cancelled while paid (a double click sends one action, with one idempotency key) and its refund
// and ledger entries appearing; stock adjusted with a reason and the movement listed; a product
// created, repriced and deactivated. On every page: no serious or critical axe violation, 390 px
// without sideways scrolling, and no error in the browser's console.
//
// CONSOLE_SCREENSHOTS=1 also writes docs/images/console-order.png (the README's), from the
// run on the file's one engine: `npm run screenshots`.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
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
  describe(`the console's orders, catalog and stock pages [${engine}]`, { skip: needsChromium }, () => {
    let rig: ConsoleRig;
    let api: Client;
    let adminToken: string;
    let customer: { token: string; email: string };
    let paidOrder: string;

    before(async () => {
      rig = await startConsoleRig(engine);
      ({ api, adminToken } = rig);
      await api.ok(endpoints.createProduct, {
        token: adminToken,
        body: {
          name: 'Orders tee',
          variants: [
            { sku: 'ORD-TEE-M', name: 'Medium', price: { amount: 2500, currency: 'EUR' }, stock: 40 },
            { sku: 'ORD-TEE-L', name: 'Large', price: { amount: 2700, currency: 'EUR' }, stock: 20 },
          ],
        },
      });
      const email = `orders-customer-${Date.now()}@example.com`;
      customer = {
        token: (
          await api.ok(endpoints.signup, {
            body: { email, password: 'correct horse battery staple', name: 'Olga Orders' },
          })
        ).token,
        email,
      };
      const placed = await api.ok(endpoints.placeOrder, {
        token: customer.token,
        idempotencyKey: `orders-browser-${engine}-1`,
        body: {
          lines: [
            { sku: 'ORD-TEE-M', quantity: 2 },
            { sku: 'ORD-TEE-L', quantity: 1 },
          ],
          payment: { method: 'card', token: 'tok_ok' },
        },
      });
      paidOrder = placed.id;
      await waitFor('the order to be paid', async () =>
        (await api.ok(endpoints.getOrder, { token: adminToken, params: { id: paidOrder } })).status === 'paid'
          ? true
          : undefined,
      );
    });

    after(async () => {
      await rig?.close();
    });

    it("finds an order by its customer's email, cancels it while paid, and sees the refund and the ledger entries appear", async () => {
      const page = await rig.newPage();
      const cancels: string[] = [];
      page.on('request', (r) => {
        if (r.method() === 'POST' && r.url().endsWith('/cancel')) cancels.push(r.headers()['idempotency-key'] ?? '');
      });
      await signIn(page, rig.baseUrl, rig.admin);
      await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Orders' }).click();
      await page.getByRole('heading', { name: 'Orders', exact: true }).waitFor();
      await page.getByLabel('Customer email').fill(customer.email);
      await page.getByLabel('Status').selectOption('paid');
      await page.getByRole('button', { name: 'Find orders' }).click();
      const list = page.getByRole('table', { name: 'Orders, newest first' });
      await waitFor('the list to hold only the order', async () =>
        (await list.locator('tbody tr').count()) === 1 && (await list.innerText()).includes(paidOrder)
          ? true
          : undefined,
      );
      assert.deepEqual(await accessibilityProblems(page), []);

      await list.getByRole('link', { name: paidOrder }).click();
      await page.getByRole('heading', { name: `Order ${paidOrder}` }).waitFor();
      await page
        .getByRole('table', { name: /ledger entries/ })
        .getByText('sales')
        .waitFor();
      assert.match(await page.getByTestId('order-status').innerText(), /Paid/);
      assert.match(
        await page.getByRole('table', { name: /What was ordered/ }).innerText(),
        /ORD-TEE-M[\s\S]*2[\s\S]*€25\.00[\s\S]*€50\.00/,
      );
      assert.match(await page.locator('.total-line').innerText(), /€77\.00/);
      assert.match(
        await page.getByRole('list', { name: /Every change of status/ }).innerText(),
        /Placed:\s*Pending payment[\s\S]*Pending payment\s*→\s*Paid/,
      );
      assert.match(await page.getByRole('table', { name: /stock movements/ }).innerText(), /reservation[\s\S]*sale/);
      assert.match(
        await page.getByRole('table', { name: /Payments, with the processor's record/ }).innerText(),
        /succeeded[\s\S]*sandbox sch_/,
      );
      assert.deepEqual(await accessibilityProblems(page), []);

      // With the keyboard: the action, then its confirmation.
      await page.getByRole('button', { name: 'Cancel and refund' }).focus();
      await page.keyboard.press('Enter');
      const dialog = page.getByRole('dialog', { name: /Cancel and refund €77\.00\?/ });
      await dialog.waitFor();
      assert.deepEqual(await accessibilityProblems(page), []);
      // A double click on the confirmation acts once: one key for the one intended cancel.
      await dialog.getByRole('button', { name: 'Cancel and refund' }).dblclick();
      await page
        .getByRole('status')
        .filter({ hasText: /^Refunded$/ })
        .waitFor({ timeout: 45_000 });
      assert.equal(new Set(cancels).size, 1, `one idempotency key for the cancel, got ${JSON.stringify(cancels)}`);
      const ledger = page.getByRole('table', { name: /ledger entries/ });
      await ledger.getByText('refunds', { exact: true }).waitFor();
      assert.match(await ledger.innerText(), /refund\s+refunds\s+€77\.00/);
      assert.match(await page.getByTestId('refund').innerText(), /refund succeeded\s+€77\.00\s+srf_/);
      assert.match(await page.getByTestId('order-status').innerText(), /Cancelled/);
      assert.match(
        await page.getByRole('list', { name: /Every change of status/ }).innerText(),
        /Paid\s*→\s*Cancelled/,
      );
      // The stock put back says why, so the movements add up for whoever reads them.
      await page
        .getByRole('table', { name: /stock movements/ })
        .getByText('(sale reversed: order cancelled)')
        .first()
        .waitFor();
      const history = await api.ok(endpoints.listOrderHistory, { token: adminToken, params: { id: paidOrder } });
      assert.equal(history.data.filter((h) => h.to === 'cancelled').length, 1, 'cancelled once');
      assert.deepEqual(await accessibilityProblems(page), []);
      if (screenshots) {
        await mkdir(screenshots, { recursive: true });
        await page.screenshot({ path: join(screenshots, 'console-order.png'), fullPage: true });
      }
    });

    it('adjusts stock with a reason and sees the movement', async () => {
      const page = await rig.newPage();
      await signIn(page, rig.baseUrl, rig.admin);
      await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Stock' }).click();
      const levels = page.getByRole('table', { name: /Stock per SKU/ });
      await levels.getByRole('link', { name: 'ORD-TEE-L' }).click();
      await page.getByRole('heading', { name: 'Stock of ORD-TEE-L' }).waitFor();
      const before = Number((await page.getByTestId('stock-on-hand').innerText()).replace(/\D/g, ''));
      await page.getByLabel(/^Units/).fill('5');
      await page.getByLabel('Reason').fill('Delivery from the supplier');
      await page.getByLabel('Reason').press('Enter');
      await page
        .getByRole('status')
        .filter({ hasText: /Adjusted by \+5/ })
        .waitFor();
      const movements = page.getByRole('table', { name: /What explains the stock of ORD-TEE-L/ });
      await movements.getByText('Delivery from the supplier').waitFor();
      assert.match(
        await movements.locator('tbody tr').first().innerText(),
        /adjustment\s+\+5\s+0\s+Delivery from the supplier/,
      );
      assert.equal(Number((await page.getByTestId('stock-on-hand').innerText()).replace(/\D/g, '')), before + 5);
      assert.equal(
        (await api.ok(endpoints.getStock, { token: adminToken, params: { sku: 'ORD-TEE-L' } })).onHand,
        before + 5,
      );
      assert.deepEqual(await accessibilityProblems(page), []);
    });

    it('creates a product, changes a price and deactivates it from the catalog', async () => {
      const page = await rig.newPage();
      await signIn(page, rig.baseUrl, rig.admin);
      await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Catalog' }).click();
      await page.getByRole('button', { name: 'New product' }).click();
      await page.getByLabel('Name', { exact: true }).fill('Browser mug');
      await page.getByLabel('SKU').fill('BROWSER-MUG');
      await page.getByLabel('Price (EUR)').fill('12.50');
      await page.getByLabel('Starting stock').fill('7');
      await page.getByRole('button', { name: 'Create the product' }).click();
      await page.getByRole('status').filter({ hasText: 'Created Browser mug.' }).waitFor();
      const mug = page.getByRole('listitem').filter({ has: page.getByRole('heading', { name: /Browser mug/ }) });
      await mug.getByLabel('Price of BROWSER-MUG in EUR').fill('14.00');
      await mug.getByRole('button', { name: 'Save the price of BROWSER-MUG' }).click();
      await page.getByRole('status').filter({ hasText: 'BROWSER-MUG now costs €14.00.' }).waitFor();
      await mug.getByRole('button', { name: 'Deactivate Browser mug' }).click();
      await page
        .getByRole('dialog', { name: 'Deactivate Browser mug?' })
        .getByRole('button', { name: 'Deactivate' })
        .click();
      await page.getByRole('status').filter({ hasText: 'Browser mug is inactive.' }).waitFor();
      const products = (await api.ok(endpoints.listProducts, { token: adminToken, query: { includeInactive: true } }))
        .data;
      const created = products.find((p) => p.name === 'Browser mug')!;
      assert.equal(created.active, false);
      assert.deepEqual(
        created.variants.map((v) => [v.sku, v.price.amount, v.available]),
        [['BROWSER-MUG', 1400, 7]],
      );
      assert.deepEqual(await accessibilityProblems(page), []);
    });

    it('reads at 390 px wide, without sideways scrolling or accessibility problems', async () => {
      const page = await rig.newPage(390, 844);
      await signIn(page, rig.baseUrl, rig.admin);
      await page.getByRole('heading', { name: 'Operations' }).waitFor();
      for (const [path, heading] of [
        ['/orders', 'Orders'],
        [`/orders/${paidOrder}`, `Order ${paidOrder}`],
        ['/catalog', 'Catalog'],
        ['/stock', 'Stock'],
        ['/stock/ORD-TEE-M', 'Stock of ORD-TEE-M'],
      ] as const) {
        await page.goto(`${rig.baseUrl}/console${path}`);
        await page.getByRole('heading', { name: heading, exact: true }).waitFor();
        await page
          .getByText('Loading')
          .first()
          .waitFor({ state: 'detached' })
          .catch(() => {});
        await noSidewaysScroll(page);
        assert.deepEqual(await accessibilityProblems(page), [], path);
      }
    });

    it('wrote no error to the browser console on any page', () => {
      assert.deepEqual(rig.consoleErrors, []);
    });
  });
}
