// `engine-room drill`: a short, scripted incident against a running engine, so that anyone can
// watch the console do its job. Everything goes through the public API, as an admin:
//
//   1. calm: a few orders a second, paid at once; a webhook receiver (run by the drill) is up.
//   2. incident: the sandbox processor goes down for a while (PUT /v1/sandbox/outage) and the
//      receiver goes away (connection refused) while a burst of orders comes in. The orders paid
//      with the drill card (tok_drill) have a short retry budget: their charge jobs really run out
//      of attempts and are dead-lettered within seconds; the others ride the outage out.
//   3. recovery: the processor and the receiver come back; the operator retries the dead letters
//      from the console (or the drill does, with --auto-retry, or when nobody has after --wait);
//      the failed webhook deliveries succeed on their next retry; the error rate drops to zero.
//   The audit runs before, at the worst moment and after: it stays clean throughout.
//
// It needs the sandbox processor (the outage control does not exist otherwise) and, for the
// webhook part, an engine that may deliver to 127.0.0.1 (see WEBHOOK_ALLOW_PRIVATE_URLS in the
// README); without that the drill goes on without webhooks.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { ApiError, createClient, endpoints, fetchTransport, type Client } from './client.ts';

export interface DrillOptions {
  url: string;
  email: string;
  password: string;
  /** Orders of the burst. */
  orders: number;
  /** How long the processor is down (counted again from the end of the burst). */
  outageSeconds: number;
  /** Retry the dead letters without waiting for an operator. */
  autoRetry: boolean;
  /** How long to wait for an operator to retry the dead letters before the drill does it. */
  waitSeconds: number;
  /** Where the drill's lines go (standard output). */
  out: (line: string) => void;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A webhook receiver on 127.0.0.1 that can go away (its port refuses connections) and come back on the same port. */
async function startReceiver(): Promise<{
  url: string;
  received: () => number;
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}> {
  let received = 0;
  let server: Server | undefined;
  let port = 0;
  const listen = async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        received++;
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      });
    });
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen(port, '127.0.0.1', () => resolve());
    });
    port = (server.address() as AddressInfo).port;
  };
  const stop = async () => {
    if (!server) return;
    const s = server;
    server = undefined;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  await listen();
  return {
    url: `http://127.0.0.1:${port}/drill-webhooks`,
    received: () => received,
    down: stop,
    up: listen,
    close: stop,
  };
}

function clock(startedAt: number): string {
  const s = Math.floor((Date.now() - startedAt) / 1000);
  return `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}

export async function runDrill(options: DrillOptions): Promise<number> {
  const { out } = options;
  const startedAt = Date.now();
  const say = (line: string) => out(`[${clock(startedAt)}] ${line}`);
  const base = options.url.replace(/\/$/, '');
  const api: Client = createClient(fetchTransport(base));
  const tag = randomBytes(3).toString('hex');

  try {
    const ready = await fetch(`${base}/readyz`);
    if (!ready.ok) throw new Error(`${base}/readyz answered ${ready.status}`);
  } catch (err) {
    out(`drill: no engine answers at ${base} (${(err as Error).message}). Start one with npm start, or pass --url.`);
    return 1;
  }
  let token: string;
  try {
    const login = await api.ok(endpoints.login, { body: { email: options.email, password: options.password } });
    if (login.user.role !== 'admin') {
      out(
        `drill: ${options.email} is ${login.user.role}, not admin: the drill starts an outage, which only admins may.`,
      );
      return 1;
    }
    token = login.token;
  } catch (err) {
    out(
      `drill: cannot sign in as ${options.email}: ${(err as Error).message}. Give an admin's credentials with --email and --password (or ADMIN_EMAIL and ADMIN_PASSWORD).`,
    );
    return 1;
  }
  const outage = await api.call(endpoints.getSandboxOutage, { token });
  if (outage.status === 404) {
    out(
      'drill: this engine has no sandbox outage control: it runs a real payment processor (PAYMENT_PROVIDER=stripe). The drill only runs against the sandbox.',
    );
    return 1;
  }

  const receiver = await startReceiver();
  let endpointId: string | null = null;
  // Best effort: the drill ends either way, and an outage left on ends by itself at its end time.
  const cleanup = async () => {
    await api.call(endpoints.endSandboxOutage, { token }).catch(() => {});
    if (endpointId)
      await api.call(endpoints.deleteWebhookEndpoint, { token, params: { id: endpointId } }).catch(() => {});
    await receiver.close();
  };
  const interrupted = () => {
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);

  try {
    say(`Drill ${tag} against ${base}`);
    out('');
    out(`  Open ${base}/console and sign in as ${options.email}. Keep the Operations page open:`);
    out('  watch "Failing now", "Dead letters", the charges chart, Webhooks, and the audit.');
    out('');

    // Set-up: a product with enough stock, a customer, the webhook endpoint.
    const sku = `DRILL-${tag.toUpperCase()}`;
    await api.ok(endpoints.createProduct, {
      token,
      body: {
        name: `Drill ${tag}`,
        variants: [
          { sku, name: 'Drill unit', price: { amount: 1500, currency: 'EUR' }, stock: options.orders * 2 + 100 },
        ],
      },
    });
    const customer = await api.ok(endpoints.signup, {
      body: {
        email: `drill-${tag}@example.com`,
        password: `drill-${randomBytes(9).toString('base64url')}`,
        name: `Drill customer ${tag}`,
      },
    });
    const created = await api.call(endpoints.createWebhookEndpoint, {
      token,
      body: { url: receiver.url, events: ['order.created', 'order.paid', 'order.payment_failed'] },
    });
    if (created.ok) {
      endpointId = created.body.id;
      say(`webhook receiver up at ${receiver.url} (endpoint ${endpointId})`);
    } else {
      say(
        `the engine refused a webhook endpoint on 127.0.0.1 (${(created.body as { detail?: string }).detail ?? created.status}): going on without the webhook part.`,
      );
      say('  (start the engine with WEBHOOK_ALLOW_PRIVATE_URLS=true to include it)');
    }
    const audit = async (when: string) => {
      const run = await api.ok(endpoints.runAudit, { token });
      say(
        `audit ${when}: ${
          run.ok
            ? 'clean'
            : `VIOLATIONS in ${run.checks
                .filter((c) => !c.ok)
                .map((c) => c.name)
                .join('; ')}`
        }`,
      );
      return run.ok;
    };
    let clean = await audit('before the incident');

    let placed = 0;
    const drillOrders: string[] = [];
    const order = async (card: string) => {
      const o = await api.ok(endpoints.placeOrder, {
        token: customer.token,
        idempotencyKey: `drill-${tag}-${placed}`,
        body: { lines: [{ sku, quantity: 1 }], payment: { method: 'card', token: card } },
      });
      placed++;
      return o.id;
    };
    const status = async () => {
      const o = await api.ok(endpoints.operationsOverview, { token, query: { window: 900 } });
      const charge = o.queues.find((q) => q.name === 'payments.charge');
      const deliver = o.queues.find((q) => q.name === 'webhooks.deliver');
      return {
        webhooksRetrying: deliver?.retrying ?? 0,
        dead: charge?.deadLetters ?? 0,
        retrying: charge?.retrying ?? 0,
        retried: o.charges.retried,
        failed: o.charges.failed,
        failingEndpoints: o.webhooks.failingEndpoints,
        failingNow:
          (o.charges.retriedPerMinute.at(-1) ?? 0) +
          (o.charges.failedPerMinute.at(-1) ?? 0) +
          (o.webhooks.failedPerMinute.at(-1) ?? 0),
      };
    };
    const progress = async (phase: string) => {
      const s = await status();
      say(
        `${phase} · ${placed} orders placed · charges retried ${s.retried}, failed for good ${s.failed} · dead letters ${s.dead} · webhook endpoints failing ${s.failingEndpoints}`,
      );
      return s;
    };

    // 1. Calm.
    say('1/3 calm: orders arrive and are paid at once');
    for (let i = 0; i < 8; i++) {
      await order('tok_ok');
      await sleep(750);
    }
    await progress('calm');

    // 2. The incident.
    let down = await api.ok(endpoints.startSandboxOutage, { token, body: { seconds: options.outageSeconds } });
    if (endpointId) await receiver.down();
    say(
      `2/3 incident: the payment processor is down until ${down.until ? new Date(down.until).toLocaleTimeString() : '?'} (${options.outageSeconds} s)${endpointId ? ', and the webhook receiver went away' : ''}`,
    );
    say(
      `    a burst of ${options.orders} orders: half with the drill card (3 attempts, then dead letters), half with tok_ok (full retry budget)`,
    );
    for (let i = 0; i < options.orders; i++) {
      const id = await order(i % 2 === 0 ? 'tok_drill' : 'tok_ok');
      if (i % 2 === 0) drillOrders.push(id);
      await sleep(Math.max(50, Math.floor(8000 / options.orders)));
    }
    // The outage lasts its length after the last order of the burst too, however long the burst
    // took (a busy engine answers slowly): every drill charge meets it for all its attempts.
    down = await api.ok(endpoints.startSandboxOutage, { token, body: { seconds: options.outageSeconds } });
    say(
      `    the burst is in (${placed} orders so far); the processor stays down until ${down.until ? new Date(down.until).toLocaleTimeString() : '?'}`,
    );
    const expectedDead = drillOrders.length;
    let worst = await progress('incident');
    while (Date.now() < Date.parse(down.until ?? '') && worst.dead < expectedDead) {
      await sleep(3000);
      worst = await progress('incident');
    }
    clean = (await audit('at the worst moment')) && clean;
    while (Date.parse(down.until ?? '') > Date.now()) {
      await sleep(Math.min(3000, Date.parse(down.until!) - Date.now()));
      await progress(
        `incident (${Math.max(0, Math.ceil((Date.parse(down.until!) - Date.now()) / 1000))} s of outage left)`,
      );
    }

    // 3. Recovery.
    if (endpointId) await receiver.up();
    say(`3/3 recovery: the processor is back${endpointId ? ', and so is the webhook receiver' : ''}`);
    let s = await progress('recovery');
    if (s.dead > 0) {
      if (options.autoRetry) say(`${s.dead} charges are dead letters: retrying them (--auto-retry)`);
      else {
        out('');
        out(`  >>> ${s.dead} charge jobs ran out of attempts. In the console: Queues, payments.charge, "Retry all"`);
        out(`      (or each one under Dead letters). Waiting up to ${options.waitSeconds} s for you...`);
        out('');
      }
      const deadline = Date.now() + (options.autoRetry ? 0 : options.waitSeconds * 1000);
      while (s.dead > 0 && Date.now() < deadline) {
        await sleep(3000);
        s = await progress('waiting for the operator');
      }
      if (s.dead > 0) {
        if (!options.autoRetry) say('nobody retried them: the drill does it now');
        const r = await api.ok(endpoints.retryAllFailedJobs, {
          token,
          body: { queue: 'payments.charge' },
          idempotencyKey: `drill-${tag}-retry-${Date.now()}`,
        });
        say(`sent ${r.retried} jobs back to payments.charge`);
      }
    }
    // Every order of the drill paid, and every webhook endpoint delivering again.
    const settleBy = Date.now() + 300_000;
    for (;;) {
      const orders = await Promise.all(drillOrders.map((id) => api.ok(endpoints.getOrder, { token, params: { id } })));
      const unpaid = orders.filter((o) => o.status !== 'paid').length;
      s = await status();
      if (unpaid === 0 && s.failingEndpoints === 0 && s.retrying === 0 && s.webhooksRetrying === 0) break;
      if (Date.now() > settleBy) {
        say(`gave up waiting: ${unpaid} drill orders unpaid, ${s.failingEndpoints} webhook endpoints failing`);
        break;
      }
      say(
        `recovering · ${unpaid} drill orders still unpaid · charges waiting for a retry ${s.retrying} · webhook deliveries waiting for a retry ${s.webhooksRetrying}${s.webhooksRetrying ? ' (the first retry comes 1-2 min after a failure)' : ''}`,
      );
      await sleep(5000);
    }
    clean = (await audit('after recovery')) && clean;
    say(
      `done: ${placed} orders, every drill order paid, ${endpointId ? `${receiver.received()} webhooks received, ` : ''}the audit ${clean ? 'stayed clean throughout' : 'FOUND VIOLATIONS'}.`,
    );
    say('On the page, "Failing now" is back to 0; the charts show the incident and its end.');
    return clean ? 0 : 1;
  } catch (err) {
    out(
      `drill: ${err instanceof ApiError ? `${err.status} ${err.problem.code}: ${err.problem.detail ?? ''}` : (err as Error).message}`,
    );
    return 1;
  } finally {
    process.removeListener('SIGINT', interrupted);
    await cleanup();
  }
}
