// What every browser test of the console shares: the server `engine-room start` runs (startServer:
// API, console, event stream and workers), started in the test process on a fresh database of the
// engine asked for, with a known admin; Chromium (Debian's, driven by playwright-core); pages
// that record every error the browser's console prints; and the checks each page must pass (axe,
// no sideways scroll).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { AxeBuilder } from '@axe-core/playwright';
import { createClient, endpoints, fetchTransport, type Client } from '../../src/client.ts';
import { freshDatabase, pgliteTemplate, type Engine, type TestDatabase } from './database.ts';
import { unthrottled } from './unthrottled.ts';
import { loadConfig } from '../../src/config.ts';
import { openPglite } from '../../src/platform/db.ts';
import { startServer } from '../../src/server.ts';

export const chromiumPath = '/usr/bin/chromium';
export const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** For describe(): skip, saying why, where Chromium is not installed. */
export const needsChromium = existsSync(chromiumPath)
  ? false
  : `needs Chromium at ${chromiumPath} (apt-get install chromium)`;

/** Serious and critical axe violations of the page as it is now, as readable lines. */
export async function accessibilityProblems(page: Page): Promise<string[]> {
  const result = await new AxeBuilder({ page })
    .withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'])
    .analyze();
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map(
      (v) =>
        `${v.impact} ${v.id}: ${v.help} (${v.nodes
          .map((n) => n.target.join(' '))
          .slice(0, 3)
          .join(', ')})`,
    );
}

export async function noSidewaysScroll(page: Page): Promise<void> {
  // Evaluated in the page (a string: this file is type-checked without the DOM's types).
  const { scroll, width } = await page.evaluate<{ scroll: number; width: number }>(
    '({ scroll: document.documentElement.scrollWidth, width: window.innerWidth })',
  );
  assert.ok(scroll <= width, `the page is ${scroll} px wide in a ${width} px window`);
}

export async function signIn(page: Page, baseUrl: string, who: { email: string; password: string }): Promise<void> {
  await page.goto(`${baseUrl}/console`);
  await page.getByLabel('Email').fill(who.email);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

export interface ConsoleRig {
  baseUrl: string;
  browser: Browser;
  /** A client of the engine's public API (over HTTP). */
  api: Client;
  admin: { email: string; password: string };
  adminToken: string;
  /** Every error the browser's console printed, on any page of this rig. */
  consoleErrors: string[];
  newPage(width?: number, height?: number): Promise<Page>;
  close(): Promise<void>;
}

/**
 * Starts the server in this process on a fresh database (extra settings in env) and a browser. In
 * process rather than a spawned `engine-room start`: the same startServer, without a second Node
 * process compiling the sources and a second copy of PGlite (test/cli.test.ts starts the real
 * command).
 */
export async function startConsoleRig(engine: Engine, env: Record<string, string> = {}): Promise<ConsoleRig> {
  const admin = { email: 'console-admin@example.com', password: 'console-admin-password' };
  const settings: Record<string, string> = {
    ADMIN_EMAIL: admin.email,
    ADMIN_PASSWORD: admin.password,
    WORKER_POLL_INTERVAL_MS: '100',
    LOG_LEVEL: 'warn',
    ...env,
  };
  let database: TestDatabase | undefined;
  let dataDir: string | undefined;
  if (engine === 'postgres') {
    database = await freshDatabase('postgres', 2);
    settings.DATABASE_URL = database.url!;
    await database.db.close();
  } else {
    // Restored from the migrated template rather than made by initdb (seconds), as startFreshServer does.
    dataDir = await mkdtemp(join(tmpdir(), 'er-console-'));
    await (await openPglite({ dataDir, loadDataDir: await pgliteTemplate() })).close();
    settings.DATA_DIR = dataDir;
  }
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  let browser: Browser | undefined;
  const contexts: BrowserContext[] = [];
  const consoleErrors: string[] = [];
  const close = async () => {
    for (const context of contexts) await context.close().catch(() => {});
    await browser?.close();
    await server?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    await database?.drop().catch(() => {});
  };
  try {
    server = await startServer(loadConfig({ PORT: '0', HOST: '127.0.0.1', ...unthrottled, ...settings }));
    const address = server.app.server.address();
    if (address === null || typeof address === 'string') throw new Error(`the server listens on ${String(address)}`);
    const baseUrl = `http://127.0.0.1:${address.port}`;
    browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
    const api = createClient(fetchTransport(baseUrl));
    const adminToken = (await api.ok(endpoints.login, { body: admin })).token;
    const b = browser;
    return {
      baseUrl,
      browser: b,
      api,
      admin,
      adminToken,
      consoleErrors,
      close,
      async newPage(width = 1280, height = 900) {
        const context = await b.newContext({ viewport: { width, height } });
        contexts.push(context);
        const page = await context.newPage();
        page.on('console', (message) => {
          if (message.type() === 'error') consoleErrors.push(`${message.text()} (${message.location().url})`);
        });
        page.on('pageerror', (err) => consoleErrors.push(`uncaught: ${err.message}`));
        return page;
      },
    };
  } catch (err) {
    await close();
    throw err;
  }
}
