// npm run bench:console: what the console costs, measured rather than asserted in tests.
//
// - payload: the console's JavaScript and CSS, gzipped, as the server sends them (console/dist);
// - time to interactive: from navigation to the operations page showing its figures (the data
//   fetched and drawn), in Chromium, with the browser cache cold and then warm; the browser's own
//   domInteractive too;
// - server cost of the live updates: CPU time of the engine process over a quiet period with no
//   page open, then over the same period with the operations page open (it refreshes every 5 s),
//   the difference as a share of one core. Several pages open show how it grows.
//
// Against a fresh `engine-room start` on the embedded database (or PostgreSQL with --database-url),
// with some orders placed first so that the page has figures to show.
//
//   npm run bench:console -- [--seconds 60] [--pages 1] [--database-url URL] [--json FILE]
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium, type Browser } from 'playwright-core';
import { createClient, endpoints, fetchTransport } from '../src/client.ts';
import { packageRoot } from '../src/platform/paths.ts';
import { createScratch, freePort, startEngineProcess, type Scratch } from './lib/engine.ts';
import { cpuSeconds, loadAverage } from './lib/proc.ts';
import { percentiles, table } from './lib/stats.ts';
import { chromiumArgs } from '../test/support/console-browser.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    pages: { type: 'string', default: '1' },
    runs: { type: 'string', default: '5' },
    'database-url': { type: 'string' },
    json: { type: 'string' },
  },
});
const seconds = Number(values.seconds);
const pageCount = Number(values.pages);
const runs = Number(values.runs);
const admin = { email: 'bench-admin@example.com', password: 'bench-admin-password' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (s: string) => process.stderr.write(s + '\n');

async function main(): Promise<void> {
  // 1. Payload.
  const manifest = JSON.parse(await readFile(join(packageRoot, 'console', 'dist', 'manifest.json'), 'utf8')) as {
    files: Record<string, { bytes: number; gzipBytes: number }>;
  };
  const payload = Object.entries(manifest.files).map(([name, f]) => ({ name, ...f }));
  const gzipTotal = payload.reduce((a, f) => a + f.gzipBytes, 0);

  // 2. The engine, with figures to show.
  let scratch: Scratch | undefined;
  let dataDir: string | undefined;
  const env: Record<string, string> = { ADMIN_EMAIL: admin.email, ADMIN_PASSWORD: admin.password, LOG_LEVEL: 'warn' };
  if (values['database-url']) {
    scratch = await createScratch(values['database-url'], 'console');
    env.DATABASE_URL = scratch.url;
  } else {
    dataDir = await mkdtemp(join(tmpdir(), 'er-bench-console-'));
    env.DATA_DIR = dataDir;
  }
  const engine = startEngineProcess({ role: 'api', label: 'engine', env, port: await freePort() });
  let browser: Browser | undefined;
  try {
    await engine.ready;
    const baseUrl = engine.baseUrl!;
    const api = createClient(fetchTransport(baseUrl));
    const login = await api.ok(endpoints.login, { body: admin });
    await api.ok(endpoints.createProduct, {
      token: login.token,
      body: {
        name: 'Bench tee',
        variants: [{ sku: 'BENCH-TEE', price: { amount: 2000, currency: 'EUR' }, stock: 10_000 }],
      },
    });
    const buyer = await api.ok(endpoints.signup, {
      body: { email: 'bench-buyer@example.com', password: 'correct horse battery staple', name: 'Bench buyer' },
    });
    for (let i = 0; i < 50; i++) {
      await api.ok(endpoints.placeOrder, {
        token: buyer.token,
        idempotencyKey: `bench-${i}`,
        body: {
          lines: [{ sku: 'BENCH-TEE', quantity: 1 }],
          payment: { method: 'card', token: i % 10 === 0 ? 'tok_declined' : 'tok_ok' },
        },
      });
    }
    await sleep(6000); // the figures are flushed every 5 s

    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: chromiumArgs });
    const cookie = { name: 'er_session', value: login.token, url: baseUrl };

    // 3. Time to interactive: a cold cache (a new context each time), then a warm one.
    const measure = async (warm: boolean) => {
      const context = await browser!.newContext({ viewport: { width: 1280, height: 900 } });
      await context.addCookies([cookie]);
      const page = await context.newPage();
      if (warm) {
        await page.goto(`${baseUrl}/console`);
        await page.getByTestId('stat-orders').waitFor();
      }
      const started = Date.now();
      await page.goto(`${baseUrl}/console`);
      await page.getByTestId('stat-paid').waitFor();
      const ready = Date.now() - started;
      const nav = await page.evaluate<{ domInteractive: number; transferred: number }>(`(() => {
        const n = performance.getEntriesByType('navigation')[0];
        const transferred = performance.getEntriesByType('resource').reduce((a, r) => a + r.transferSize, n.transferSize);
        return { domInteractive: n.domInteractive, transferred };
      })()`);
      await context.close();
      return { ready, domInteractive: nav.domInteractive, transferred: nav.transferred };
    };
    const cold: { ready: number; domInteractive: number; transferred: number }[] = [];
    const warm: { ready: number; domInteractive: number; transferred: number }[] = [];
    for (let i = 0; i < runs; i++) cold.push(await measure(false));
    for (let i = 0; i < runs; i++) warm.push(await measure(true));

    // 4. Server cost of the live updates.
    const cpuOver = async (ms: number) => {
      const before = cpuSeconds(engine.pid) ?? 0;
      await sleep(ms);
      return (cpuSeconds(engine.pid) ?? 0) - before;
    };
    log(`quiet engine for ${seconds} s...`);
    const idle = await cpuOver(seconds * 1000);
    const contexts = [];
    for (let i = 0; i < pageCount; i++) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      await context.addCookies([cookie]);
      const page = await context.newPage();
      await page.goto(`${baseUrl}/console`);
      await page.getByTestId('stat-orders').waitFor();
      contexts.push(context);
    }
    await sleep(2000);
    log(`${pageCount} operations page(s) open for ${seconds} s...`);
    const watched = await cpuOver(seconds * 1000);
    for (const c of contexts) await c.close();

    const p = (xs: number[]) => percentiles(xs);
    const results = {
      engine: values['database-url'] ? 'postgres' : 'pglite',
      loadAverage: loadAverage(),
      payload: { files: payload, gzipTotal },
      timeToInteractiveMs: { cold: p(cold.map((r) => r.ready)), warm: p(warm.map((r) => r.ready)) },
      domInteractiveMs: { cold: p(cold.map((r) => r.domInteractive)), warm: p(warm.map((r) => r.domInteractive)) },
      transferredBytes: { cold: cold[0]!.transferred, warm: warm[0]!.transferred },
      liveUpdates: {
        seconds,
        pages: pageCount,
        idleCpuSeconds: idle,
        watchedCpuSeconds: watched,
        shareOfCore: Math.max(0, watched - idle) / seconds,
      },
    };
    process.stdout.write(
      table([
        ['what', 'figure'],
        [
          'console payload (JS + CSS, gzipped)',
          `${(gzipTotal / 1024).toFixed(1)} KiB (${payload.map((f) => `${f.name} ${(f.gzipBytes / 1024).toFixed(1)} KiB`).join(', ')})`,
        ],
        [
          'bytes over the wire, first load (page, assets, API)',
          `${(results.transferredBytes.cold / 1024).toFixed(1)} KiB; cached: ${(results.transferredBytes.warm / 1024).toFixed(1)} KiB`,
        ],
        [
          'figures on screen, cold cache (median / max)',
          `${results.timeToInteractiveMs.cold.p50} ms / ${results.timeToInteractiveMs.cold.max} ms`,
        ],
        [
          'figures on screen, warm cache (median / max)',
          `${results.timeToInteractiveMs.warm.p50} ms / ${results.timeToInteractiveMs.warm.max} ms`,
        ],
        ['domInteractive, cold (median)', `${Math.round(results.domInteractiveMs.cold.p50)} ms`],
        [`engine CPU, quiet, ${seconds} s`, `${idle.toFixed(2)} s (${((idle / seconds) * 100).toFixed(2)}% of a core)`],
        [
          `engine CPU, ${pageCount} page(s) open, ${seconds} s`,
          `${watched.toFixed(2)} s (${((watched / seconds) * 100).toFixed(2)}% of a core)`,
        ],
        ['cost of the live updates', `${(results.liveUpdates.shareOfCore * 100).toFixed(2)}% of a core`],
        ['load average', results.loadAverage],
      ]) + '\n',
    );
    if (values.json) await writeFile(values.json, JSON.stringify(results, null, 2) + '\n');
  } finally {
    await browser?.close();
    await engine.kill('SIGTERM');
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    await scratch?.drop();
  }
}

await main();
