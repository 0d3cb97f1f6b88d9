// Builds the real app on a fresh database and a typed client that talks to it through inject.
import { describe, before, after } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.ts';
import { loadConfig, type Config } from '../../src/config.ts';
import { createClient, endpoints, injectTransport, type Client } from '../../src/client.ts';
import { engines, freshDatabase, type Engine, type EngineMatrix, type TestDatabase } from './database.ts';
import { ensureAdmin, hashSecret } from '../../src/modules/accounts/service.ts';
import { newId } from '../../src/platform/ids.ts';
import { randomBytes } from 'node:crypto';
import type { Product } from '../../src/modules/catalog/schemas.ts';
import { pino } from 'pino';
import { declareAllQueues, startWorkers } from '../../src/worker.ts';
import type { Queue } from '../../src/platform/queue.ts';
import { traceDb } from '../../src/platform/tracing.ts';
import { unthrottled } from './unthrottled.ts';

export const adminEmail = 'admin@test.example';
export const adminPassword = 'admin-test-password-1';

export { injectTransport };

export interface TestEnv {
  engine: Engine;
  app: FastifyInstance;
  database: TestDatabase;
  config: Readonly<Config>;
  client: Client;
  logs: string[];
  /** The started workers, when the suite asked for them. */
  queue: Queue | undefined;
  /** A session token of the admin that the first start created. */
  adminToken: string;
  /** Signs up a new customer with a unique email and answers its token and id. */
  customer(name?: string): Promise<{ token: string; id: string; email: string }>;
  /** Many customers at once, written straight to the database (signing up 200 would cost 200 password hashes). */
  customers(n: number): Promise<{ token: string; id: string }[]>;
  /** Creates a product as the admin and answers it. */
  product(
    variants: { sku: string; stock: number; amount?: number; currency?: string }[],
    name?: string,
  ): Promise<Product>;
  close(): Promise<void>;
}

let counter = 0;

export interface TestOptions {
  /** Run the job workers in the test process too (payments, webhooks, schedules). */
  workers?: boolean;
}

export async function startTestEnv(
  engine: Engine,
  env: Record<string, string> = {},
  options: TestOptions = {},
): Promise<TestEnv> {
  const database = await freshDatabase(engine);
  // DATABASE_URL lets the live event stream LISTEN on its own connection, as in production.
  // Every test client signs up from one address: the signup throttle is off unless a suite sets it.
  // The API-wide rate limits count (their code runs in every suite) but never refuse; load shedding
  // is off (a loaded test machine delays the event loop): suites that test them set their own.
  const config = loadConfig({
    LOG_LEVEL: 'info',
    SECURE_COOKIES: 'false',
    WORKER_POLL_INTERVAL_MS: '100',
    SANDBOX_SLOW_DELAY_MS: '300',
    SIGNUP_MAX_PER_CLIENT: '1000000',
    ...unthrottled,
    ...(database.url ? { DATABASE_URL: database.url } : {}),
    ...env,
  });
  const logs: string[] = [];
  const logStream = {
    write: (line: string) => {
      logs.push(line);
    },
  };
  await ensureAdmin(database.db, { email: adminEmail, password: adminPassword });
  await declareAllQueues(database.db, config);
  // As openDatabase does: the same db when tracing is off (every suite but the tracing one).
  const db = traceDb(database.db);
  const app = await buildApp(config, db, { logStream });
  const queue = options.workers ? await startWorkers(db, config, pino({ level: 'info' }, logStream)) : undefined;
  const client = createClient(injectTransport(app));
  const { token: adminToken } = await client.ok(endpoints.login, {
    body: { email: adminEmail, password: adminPassword },
  });
  return {
    engine,
    app,
    database,
    config,
    client,
    logs,
    adminToken,
    async customer(name = 'Test Customer') {
      const email = `customer${++counter}.${process.pid}.${Date.now()}@test.example`;
      const res = await client.ok(endpoints.signup, {
        body: { email, password: 'correct horse battery staple', name },
      });
      return { token: res.token, id: res.user.id, email };
    },
    async customers(n) {
      const ids = Array.from({ length: n }, () => newId('usr'));
      const tokens = ids.map(() => `ers_${randomBytes(32).toString('base64url')}`);
      await database.db.query(
        `INSERT INTO users (id, email, name, role, password_hash) SELECT id, id || '@bulk.test', 'Bulk', 'customer', 'x' FROM unnest($1::text[]) AS id`,
        [ids],
      );
      await database.db.query(
        `INSERT INTO sessions (id, user_id, token_hash, expires_at) SELECT 'ses_' || u, u, h, now() + interval '1 hour' FROM unnest($1::text[], $2::bytea[]) AS t(u, h)`,
        [ids, tokens.map(hashSecret)],
      );
      return ids.map((id, i) => ({ id, token: tokens[i]! }));
    },
    async product(variants, name = 'Test product') {
      return client.ok(endpoints.createProduct, {
        token: adminToken,
        body: {
          name,
          variants: variants.map((v) => ({
            sku: v.sku,
            stock: v.stock,
            price: { amount: v.amount ?? 1000, currency: v.currency ?? 'EUR' },
          })),
        },
      });
    },
    queue,
    async close() {
      await queue?.stop();
      await app.close();
      await database.drop();
    },
  };
}

type SuiteBody = (env: () => TestEnv) => void;

/**
 * Runs the suite once per engine of the matrix ('parity' or 'one': test/support/database.ts), each
 * with its own fresh database and app. A file that names no matrix runs on one engine.
 */
export function forEachEngine(
  title: string,
  matrix: EngineMatrix,
  body: SuiteBody,
  env?: Record<string, string>,
  options?: TestOptions,
): void;
export function forEachEngine(
  title: string,
  body: SuiteBody,
  env?: Record<string, string>,
  options?: TestOptions,
): void;
export function forEachEngine(
  title: string,
  ...args:
    | [EngineMatrix, SuiteBody, Record<string, string>?, TestOptions?]
    | [SuiteBody, Record<string, string>?, TestOptions?]
): void {
  const [matrix, body, env = {}, options = {}] =
    typeof args[0] === 'string'
      ? (args as [EngineMatrix, SuiteBody, Record<string, string>?, TestOptions?])
      : (['one', ...(args as [SuiteBody, Record<string, string>?, TestOptions?])] as const);
  for (const engine of engines(matrix)) {
    describe(`${title} [${engine}]`, () => {
      let current: TestEnv | undefined;
      before(async () => {
        current = await startTestEnv(engine, env, options);
      });
      after(async () => {
        await current?.close();
      });
      body(() => {
        if (!current) throw new Error('test env not started');
        return current;
      });
    });
  }
}
