// `engine-room seed --demo`: a small shop to look at, for the console and the README's walk-through.
// Everything goes through the HTTP API of an app built in this process (inject, no port), so the
// demo data obeys exactly the rules that clients do: validation, stock reservations, the payment
// queue, the ledger, idempotency. Only the admin's temporary API key is made by a service call,
// because the seed does not know the admin's password.
import { pino } from 'pino';
import type { Config } from './config.ts';
import { buildApp } from './app.ts';
import { createClient, endpoints, injectTransport, type Client } from './client.ts';
import { openAndMigrate, adminLines } from './server.ts';
import { declareAllQueues, startWorkers } from './worker.ts';
import { loggerOptions } from './platform/log.ts';
import { createApiKey, ensureAdmin, revokeApiKey } from './modules/accounts/service.ts';
import type { Order } from './modules/orders/schemas.ts';

const customerPassword = 'demo shop password';

const products = [
  {
    name: 'T-shirt',
    description: 'Organic cotton, three sizes',
    variants: [
      ['DEMO-TEE-S', 'Small', 1999, 20],
      ['DEMO-TEE-M', 'Medium', 1999, 30],
      ['DEMO-TEE-L', 'Large', 1999, 15],
    ],
  },
  { name: 'Mug', description: 'Stoneware, 350 ml', variants: [['DEMO-MUG', 'Mug', 1200, 40]] },
  { name: 'Cap', description: 'Almost sold out', variants: [['DEMO-CAP', 'Cap', 1500, 3]] },
  { name: 'Poster', description: 'Back in spring', active: false, variants: [['DEMO-POSTER', 'A2', 900, 0]] },
] as const;

const customers = [
  { name: 'Ada Lovelace', email: 'ada@demo.engine-room.local' },
  { name: 'Grace Hopper', email: 'grace@demo.engine-room.local' },
  { name: 'Alan Turing', email: 'alan@demo.engine-room.local' },
] as const;

function progress(line: string): void {
  process.stderr.write(`seed: ${line}\n`);
}

async function until(api: Client, token: string, id: string, status: Order['status']): Promise<Order> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const order = await api.ok(endpoints.getOrder, { token, params: { id } });
    if (order.status === status) return order;
    if (Date.now() > deadline)
      throw new Error(
        `order ${id} is ${order.status}, not ${status}, after 60 s: are the payment jobs failing? (engine-room jobs list)`,
      );
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Answers the exit status: 0 done, 1 refused (the database has orders and force is off). */
export async function seedDemo(config: Readonly<Config>, options: { force: boolean }): Promise<number> {
  const log = pino(loggerOptions('warn'));
  const db = await openAndMigrate(config, log);
  try {
    const [{ n }] = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM orders')) as [{ n: number }];
    if (n > 0 && !options.force) {
      process.stderr.write(
        `engine-room: this database has ${n} order(s); the demo shop is meant for an empty one. Run seed --demo --force to add it anyway.\n`,
      );
      return 1;
    }
    const created = await ensureAdmin(db, { email: config.adminEmail, password: config.adminPassword });
    if (created) process.stderr.write(adminLines(created).join('\n') + '\n');
    await declareAllQueues(db, config);
    const queue = await startWorkers(db, config, log);
    // Hundreds of requests from one admin and one address, on purpose: neither limited nor shed.
    const app = await buildApp(
      {
        ...config,
        logLevel: 'warn',
        rateLimits: { ...config.rateLimits, enabled: false },
        shedTargetWaitMs: 0,
        shedEventLoopDelayMs: 0,
        shedSlowUploadsPerClient: 0,
      },
      db,
      { queue },
    );
    const api = createClient(injectTransport(app));
    // The seed acts as the first admin, through a key of its own that it revokes when done.
    const [adminUser] = await db.query<{ id: string }>(
      `SELECT id FROM users WHERE role = 'admin' ORDER BY created_at LIMIT 1`,
    );
    const key = await db.transaction((tx) =>
      createApiKey(
        tx,
        { userId: adminUser!.id, role: 'admin', via: 'session', credentialId: 'seed' },
        { name: 'engine-room seed --demo', role: 'admin' },
      ),
    );
    const admin = key.key;
    try {
      // A second seed (--force) cannot reuse SKUs or emails: they get a suffix.
      const taken = new Set((await db.query<{ sku: string }>('SELECT sku FROM variants')).map((r) => r.sku));
      let suffix = '';
      for (let i = 2; products.some((p) => p.variants.some(([sku]) => taken.has(sku + suffix))); i++) suffix = `-${i}`;
      const sku = (base: string) => base + suffix;

      for (const p of products) {
        await api.ok(endpoints.createProduct, {
          token: admin,
          idempotencyKey: `seed-product-${p.name}${suffix}`,
          body: {
            name: p.name,
            description: p.description,
            ...('active' in p ? { active: p.active } : {}),
            variants: p.variants.map(([s, name, amount, stock]) => ({
              sku: sku(s),
              name,
              price: { amount, currency: 'EUR' },
              stock,
            })),
          },
        });
      }
      progress(
        `${products.length} products, ${products.reduce((n, p) => n + p.variants.length, 0)} variants with stock`,
      );

      const tokens: string[] = [];
      for (const c of customers) {
        const email = suffix ? c.email.replace('@', `${suffix}@`) : c.email;
        tokens.push(
          (await api.ok(endpoints.signup, { body: { email, password: customerPassword, name: c.name } })).token,
        );
      }
      const [ada, grace, alan] = tokens as [string, string, string];
      progress(`${customers.length} customers (password "${customerPassword}")`);

      const place = (token: string, lines: [string, number][], card: string, n: number) =>
        api.ok(endpoints.placeOrder, {
          token,
          idempotencyKey: `seed-order-${n}${suffix}`,
          body: {
            lines: lines.map(([s, quantity]) => ({ sku: sku(s), quantity })),
            payment: { method: 'card', token: card },
          },
        });
      const paid = await place(
        ada,
        [
          ['DEMO-TEE-M', 2],
          ['DEMO-MUG', 1],
        ],
        'tok_ok',
        1,
      );
      const toFulfil = await place(grace, [['DEMO-MUG', 2]], 'tok_ok', 2);
      const declined = await place(alan, [['DEMO-CAP', 1]], 'tok_declined', 3);
      const toCancel = await place(ada, [['DEMO-TEE-S', 1]], 'tok_ok', 4);
      await until(api, ada, paid.id, 'paid');
      await until(api, grace, toFulfil.id, 'paid');
      await api.ok(endpoints.fulfilOrder, {
        token: admin,
        params: { id: toFulfil.id },
        idempotencyKey: `seed-fulfil${suffix}`,
      });
      await until(api, alan, declined.id, 'payment_failed');
      await until(api, ada, toCancel.id, 'paid');
      await api.ok(endpoints.cancelOrder, {
        token: ada,
        params: { id: toCancel.id },
        idempotencyKey: `seed-cancel${suffix}`,
      });
      progress('orders: paid, fulfilled, payment failed, cancelled (refunded)');

      const parcel = await api.ok(endpoints.openConversation, {
        token: ada,
        body: { subject: 'Where is my parcel?', orderId: paid.id, body: 'I ordered on Monday.' },
      });
      await api.ok(endpoints.postMessage, {
        token: admin,
        params: { id: parcel.id },
        body: { body: 'It ships today.' },
      });
      await api.ok(endpoints.openConversation, {
        token: grace,
        body: { subject: 'Do you restock caps?', body: 'The cap is almost sold out.' },
      });
      progress('2 conversations, one answered');

      // Registered but disabled: it shows in the console without sending requests anywhere.
      const hook = await api.ok(endpoints.createWebhookEndpoint, {
        token: admin,
        body: { url: 'https://shop.example/hooks/engine-room', events: ['*'] },
      });
      await api.ok(endpoints.updateWebhookEndpoint, {
        token: admin,
        params: { id: hook.id },
        body: { enabled: false },
      });
      progress('1 webhook endpoint (disabled)');

      // Last, with the workers stopped, so that it is still pending when the seed ends.
      await queue.stop();
      const pending = await place(grace, [['DEMO-TEE-L', 1]], 'tok_ok', 5);
      progress(`order ${pending.id} left pending payment: the workers of the next start charge it`);
    } finally {
      await revokeApiKey(db, key.id);
      await queue.stop();
      await app.close();
    }
    progress('done');
    return 0;
  } finally {
    await db.close();
  }
}
