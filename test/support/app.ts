// Builds the real app on a fresh database and a typed client that talks to it through inject.
import { describe, before, after } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import { createClient, endpoints, type Client, type Transport } from '../../src/client.js';
import { engines, freshDatabase, type Engine, type TestDatabase } from './database.js';
import { ensureAdmin } from '../../src/modules/accounts/service.js';

export const adminEmail = 'admin@test.example';
export const adminPassword = 'admin-test-password-1';

export function injectTransport(app: FastifyInstance): Transport {
  return async (request) => {
    const res = await app.inject({ method: request.method as 'GET', url: request.url, headers: request.headers, ...(request.body !== undefined ? { payload: request.body } : {}) });
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : String(v);
    return { status: res.statusCode, headers, body: res.body };
  };
}

export interface TestEnv {
  engine: Engine;
  app: FastifyInstance;
  database: TestDatabase;
  config: Readonly<Config>;
  client: Client;
  logs: string[];
  /** A session token of the admin that the first start created. */
  adminToken: string;
  /** Signs up a new customer with a unique email and answers its token and id. */
  customer(name?: string): Promise<{ token: string; id: string; email: string }>;
  close(): Promise<void>;
}

let counter = 0;

export async function startTestEnv(engine: Engine, env: Record<string, string> = {}): Promise<TestEnv> {
  const database = await freshDatabase(engine);
  const config = loadConfig({ LOG_LEVEL: 'info', SECURE_COOKIES: 'false', ...env });
  const logs: string[] = [];
  await ensureAdmin(database.db, { email: adminEmail, password: adminPassword });
  const app = await buildApp(config, database.db, { logStream: { write: (line) => { logs.push(line); } } });
  const client = createClient(injectTransport(app));
  const { token: adminToken } = await client.ok(endpoints.login, { body: { email: adminEmail, password: adminPassword } });
  return {
    engine, app, database, config, client, logs, adminToken,
    async customer(name = 'Test Customer') {
      const email = `customer${++counter}.${process.pid}.${Date.now()}@test.example`;
      const res = await client.ok(endpoints.signup, { body: { email, password: 'correct horse battery staple', name } });
      return { token: res.token, id: res.user.id, email };
    },
    async close() {
      await app.close();
      await database.drop();
    },
  };
}

/** Runs the suite once per engine, each with its own fresh database and app. */
export function forEachEngine(title: string, body: (env: () => TestEnv) => void, env: Record<string, string> = {}): void {
  for (const engine of engines()) {
    describe(`${title} [${engine}]`, () => {
      let current: TestEnv | undefined;
      before(async () => { current = await startTestEnv(engine, env); });
      after(async () => { await current?.close(); });
      body(() => {
        if (!current) throw new Error('test env not started');
        return current;
      });
    });
  }
}
