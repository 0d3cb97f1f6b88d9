// `engine-room drill` against a real `engine-room start`: the incident happens (charges dead-
// lettered, a webhook receiver gone), recovers (dead letters retried, deliveries made), and the
// audit stays clean; and the command says clearly when it cannot run.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../src/platform/paths.ts';
import type { EngineProcess } from './support/engine-process.ts';
import { freshDatabase, postgresUrl, type TestDatabase } from './support/database.ts';
import { startOwnEngine } from './support/own-engine.ts';

const admin = { ADMIN_EMAIL: 'drill-admin@example.com', ADMIN_PASSWORD: 'drill-admin-password' };

function drill(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [join(packageRoot, 'src', 'cli.ts'), 'drill', ...args], {
    encoding: 'utf8',
    timeout: 300_000,
    env: { PATH: process.env.PATH ?? '', ...env },
  });
}

describe('engine-room drill', () => {
  let server: EngineProcess;
  let baseUrl: string;
  let dataDir: string | undefined;
  let database: TestDatabase | undefined;

  before(async () => {
    // The drill sees the engine only through its API: one engine is enough, PostgreSQL when there
    // is one (no initdb to wait for), the embedded database otherwise.
    const where: Record<string, string> = {};
    if (postgresUrl) {
      database = await freshDatabase('postgres', 1);
      await database.db.close();
      where.DATABASE_URL = database.url!;
    } else {
      dataDir = await mkdtemp(join(tmpdir(), 'er-drill-'));
      where.DATA_DIR = dataDir;
    }
    // Webhook retries a second apart, so that recovery takes seconds rather than minutes; the
    // drill's receiver is on 127.0.0.1.
    ({ server, baseUrl } = await startOwnEngine({
      ...admin,
      ...where,
      WORKER_POLL_INTERVAL_MS: '100',
      WEBHOOK_RETRY_DELAY_SECONDS: '1',
      WEBHOOK_ALLOW_PRIVATE_URLS: 'true',
    }));
  });

  after(async () => {
    await server?.kill('SIGTERM');
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    await database?.drop();
  });

  it('stages an outage that dead-letters real charges, recovers, and keeps the audit clean', () => {
    // The drill card's 3 attempts take 3 to 6 s: 15 s of outage after the burst leaves room on a busy machine.
    const run = drill(['--url', baseUrl, '--orders', '6', '--outage-seconds', '15', '--auto-retry'], admin);
    assert.equal(run.status, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /2\/3 incident: the payment processor is down/);
    assert.match(run.stdout, /dead letters [1-9]/);
    assert.match(run.stdout, /sent [1-9]\d* jobs back to payments\.charge/);
    assert.match(run.stdout, /audit at the worst moment: clean/);
    assert.match(run.stdout, /every drill order paid/);
    assert.match(run.stdout, /the audit stayed clean throughout/);
  });

  it('says what is wrong instead of starting: no engine, no admin, bad options', () => {
    const nobody = drill(['--url', 'http://127.0.0.1:9'], admin);
    assert.equal(nobody.status, 1);
    assert.match(nobody.stdout, /no engine answers at http:\/\/127\.0\.0\.1:9/);
    const wrong = drill(['--url', baseUrl, '--password', 'not-the-password'], admin);
    assert.equal(wrong.status, 1);
    assert.match(wrong.stdout, /cannot sign in as drill-admin@example\.com/);
    const usage = drill(['--orders', 'many'], admin);
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /--orders must be a whole number/);
    assert.equal(drill([]).status, 2, 'no credentials at all');
  });
});
