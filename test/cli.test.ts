// The engine-room command, run as a real process from the compiled code (as `npm start` runs it).
// Each PGlite start costs a few seconds and several hundred MB, so the start tests share one data
// directory: a first start, then a restart on the same data.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { packageRoot } from '../src/platform/paths.ts';
import { loadMigrations, migrate, MigrationError, type Migration } from '../src/platform/migrate.ts';
import { openPglite, openPostgres, type Db } from '../src/platform/db.ts';
import { engines, freshDatabase, postgresUrl, type Engine } from './support/database.ts';

const cli = join(packageRoot, 'src', 'cli.ts');
// A safety net for a child that hangs, not a window a command must fit in: with both cores busy a
// first start on the embedded database (initdb) took longer than the 60 s this used to be.
const waitLimitMs = 300_000;

/** A clean environment: nothing of the caller's (DATABASE_URL, PORT, ADMIN_*) leaks into the child. */
function cleanEnv(env: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? tmpdir(), ...env };
}

interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the first match of pattern in stderr (waiting for it to appear). */
  waitForStderr(pattern: RegExp): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ChildProcess>();

function run(args: string[], env: Record<string, string>): Running {
  const child = spawn(process.execPath, [cli, ...args], {
    env: cleanEnv(env),
    cwd: tmpdir(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  let err = '';
  const waiters: (() => void)[] = [];
  child.stdout!.on('data', (chunk) => {
    out += chunk;
  });
  child.stderr!.on('data', (chunk) => {
    err += chunk;
    waiters.forEach((w) => w());
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    // 'close' rather than 'exit': by then everything the child wrote has been read.
    child.on('close', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
      waiters.forEach((w) => w());
    });
  });
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitForStderr: (pattern) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no ${pattern} in stderr after ${waitLimitMs} ms:\n${err}\n${out}`)),
          waitLimitMs,
        );
        const check = () => {
          const match = err.match(pattern);
          if (match) {
            clearTimeout(timer);
            resolve(match);
            return;
          }
          if (child.exitCode !== null || child.signalCode !== null) {
            clearTimeout(timer);
            reject(
              new Error(`exited (${child.exitCode ?? child.signalCode}) without ${pattern} in stderr:\n${err}\n${out}`),
            );
          }
        };
        waiters.push(check);
        check();
      }),
  };
}

/** Runs a command to its end. */
async function complete(
  args: string[],
  env: Record<string, string> = {},
  limitMs = waitLimitMs,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const running = run(args, env);
  const timer = setTimeout(() => running.child.kill('SIGKILL'), limitMs);
  const { code } = await running.exited;
  clearTimeout(timer);
  return { code, stdout: running.stdout(), stderr: running.stderr() };
}

after(() => {
  for (const child of children) child.kill('SIGKILL');
});

describe('the engine-room command', () => {
  it('--help exits 0 and lists the start and migrate commands', async () => {
    const { code, stdout } = await complete(['--help']);
    assert.equal(code, 0);
    assert.match(stdout, /^\s+start\s/m);
    assert.match(stdout, /^\s+migrate\s/m);
  });

  it("--help after a command, or help <command>, shows that command's usage; --version the version", async () => {
    for (const args of [
      ['start', '--help'],
      ['jobs', '--help'],
      ['seed', '-h'],
      ['help', 'audit'],
      ['migrate', '--help'],
      ['worker', '--help'],
    ]) {
      const { code, stdout } = await complete(args);
      assert.equal(code, 0, args.join(' '));
      const command = args[0] === 'help' ? args[1] : args[0];
      assert.match(stdout, new RegExp(`^Usage: engine-room ${command}`), args.join(' '));
    }
    const { code, stdout } = await complete(['--version']);
    assert.equal(code, 0);
    assert.equal(stdout.trim(), JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')).version);
  });

  it('an unknown command or option exits 2 and says what was wrong', async () => {
    const command = await complete(['launch']);
    assert.equal(command.code, 2);
    assert.match(command.stderr, /unknown command "launch"/);
    const option = await complete(['start', '--turbo']);
    assert.equal(option.code, 2);
    assert.match(option.stderr, /--turbo/);
  });

  it('a bad variable stops the start with one line naming it, before anything is opened', async () => {
    const dataDir = join(tmpdir(), `er-cli-never-${randomBytes(4).toString('hex')}`);
    const { code, stderr, stdout } = await complete(['start'], { PORT: 'abc', DATA_DIR: dataDir });
    assert.equal(code, 1);
    const lines = stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line, not:\n${stderr}`);
    assert.match(lines[0]!, /PORT/);
    assert.match(lines[0]!, /abc/);
    assert.equal(stdout, '');
    assert.equal(existsSync(dataDir), false, 'the data directory was not even created');
  });
});

describe('engine-room start fails in one line that says what to change', () => {
  /** Exit 1, and one line on stderr (the JSON log lines go to stdout). */
  async function failsWith(env: Record<string, string>, pattern: RegExp): Promise<void> {
    const { code, stderr } = await complete(['start'], { PORT: '0', ...env });
    assert.equal(code, 1, stderr);
    const lines = stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line, not:\n${stderr}`);
    assert.match(lines[0]!, /^engine-room: cannot start: /);
    assert.match(lines[0]!, pattern);
  }

  it('a port in use, before the database is opened or created', async () => {
    const holder = net.createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => holder.once('listening', resolve));
    const dataDir = join(tmpdir(), `er-cli-port-${randomBytes(4).toString('hex')}`);
    try {
      await failsWith(
        { PORT: String((holder.address() as AddressInfo).port), DATA_DIR: dataDir },
        /port \d+ on 127\.0\.0\.1 is in use.*set PORT/,
      );
      assert.equal(existsSync(dataDir), false, 'the data directory was not even created');
    } finally {
      holder.close();
    }
  });

  it('a production start whose metrics would answer without a credential, before anything is opened', async () => {
    const dataDir = join(tmpdir(), `er-cli-prod-${randomBytes(4).toString('hex')}`);
    await failsWith(
      { NODE_ENV: 'production', DATA_DIR: dataDir, SMTP_URL: 'smtp://127.0.0.1:1' },
      /METRICS_TOKEN is not set: in production \/metrics and \/metrics\/system need a bearer token/,
    );
    assert.equal(existsSync(dataDir), false, 'the data directory was not even created');
  });

  it('a DATA_DIR that is a file, or inside one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'er-cli-file-'));
    try {
      const file = join(dir, 'not-a-directory');
      writeFileSync(file, 'x');
      await failsWith({ DATA_DIR: file }, /DATA_DIR .*not-a-directory is a file, not a directory: set DATA_DIR/);
      await failsWith(
        { DATA_DIR: join(file, 'below') },
        /DATA_DIR .*below is inside a file, not a directory: set DATA_DIR/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it(
    'a DATA_DIR this user may not write',
    { skip: process.getuid?.() === 0 && 'root may write anywhere' },
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'er-cli-ro-'));
      try {
        await (await import('node:fs/promises')).chmod(dir, 0o500);
        await failsWith({ DATA_DIR: dir }, /is not readable and writable by this user.*set DATA_DIR/);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );

  it('a DATABASE_URL where nothing listens', async () => {
    const probe = net.createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => probe.once('listening', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    await failsWith(
      { DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/none` },
      new RegExp(`PostgreSQL at 127\\.0\\.0\\.1:${port} refused the connection: .*DATABASE_URL`),
    );
  });

  it(
    'a DATABASE_URL whose user or database PostgreSQL refuses',
    { skip: !postgresUrl && 'TEST_DATABASE_URL is not set' },
    async () => {
      const url = new URL(postgresUrl!);
      url.username = 'no_such_user_er';
      url.password = 'wrong';
      await failsWith(
        { DATABASE_URL: url.toString() },
        /refused user "no_such_user_er" .*fix the user or password in DATABASE_URL/,
      );
      const missing = new URL(postgresUrl!);
      missing.pathname = '/no_such_database_er';
      await failsWith({ DATABASE_URL: missing.toString() }, /has no database "no_such_database_er": create it/);
    },
  );
});

/** Where a seed command writes: a new data dir (PGlite) or a fresh PostgreSQL database; drop() removes it. */
async function seedTarget(
  engine: Engine,
  prefix: string,
): Promise<{ dataDir: string; env: Record<string, string>; drop: () => Promise<void> }> {
  const dataDir = await mkdtemp(join(tmpdir(), prefix));
  if (engine === 'pglite')
    return { dataDir, env: { DATA_DIR: dataDir }, drop: () => rm(dataDir, { recursive: true, force: true }) };
  const database = await freshDatabase('postgres', 1);
  await database.db.close();
  return {
    dataDir,
    env: { DATABASE_URL: database.url! },
    drop: async () => {
      await database.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

describe('engine-room seed --demo', () => {
  for (const engine of engines('parity')) {
    it(`fills an empty database with a shop whose orders are in every status, and refuses a second time without --force [${engine}]`, async () => {
      const { dataDir, env, drop } = await seedTarget(engine, 'er-cli-seed-');
      try {
        // initdb, the demo shop and its payments in one process: on a busy machine, minutes (the
        // whole test took 278 s with both cores busy). A safety net for a hung seed, not a window.
        const seedLimitMs = 600_000;
        const first = await complete(
          ['seed', '--demo'],
          { ...env, ADMIN_PASSWORD: 'seed-admin-password' },
          seedLimitMs,
        );
        assert.equal(first.code, 0, first.stderr);
        assert.match(first.stderr, /seed: 4 products/);
        assert.match(first.stderr, /seed: done/);
        const db = engine === 'pglite' ? await openPglite({ dataDir }) : openPostgres(env.DATABASE_URL!, 1);
        try {
          const statuses = (
            await db.query<{ status: string }>('SELECT DISTINCT status FROM orders ORDER BY status')
          ).map((r) => r.status);
          assert.deepEqual(statuses, ['cancelled', 'fulfilled', 'paid', 'payment_failed', 'pending_payment']);
          assert.deepEqual(
            await db.query('SELECT count(*)::int AS n FROM api_keys WHERE revoked_at IS NULL'),
            [{ n: 0 }],
            'the seed revoked its key',
          );
        } finally {
          await db.close();
        }
        const again = await complete(['seed', '--demo'], env);
        assert.equal(again.code, 1);
        assert.match(again.stderr, /has 5 order\(s\).*--force/);
        const forced = await complete(['seed', '--demo', '--force'], env, seedLimitMs);
        assert.equal(forced.code, 0, forced.stderr);
        const audit = await complete(['audit'], env);
        assert.equal(audit.code, 0, audit.stdout);
      } finally {
        await drop();
      }
    });
  }
});

describe('engine-room seed --orders --customers', () => {
  for (const engine of engines('parity')) {
    it(`writes orders of new customers in every final status, ids in time order, and the audit passes [${engine}]`, async () => {
      const { dataDir, env, drop } = await seedTarget(engine, 'er-cli-bulk-');
      try {
        const seeded = await complete(
          ['seed', '--orders', '6000', '--customers', '40'],
          { ...env, ADMIN_PASSWORD: 'bulk-admin-password' },
          240_000,
        );
        assert.equal(seeded.code, 0, seeded.stderr);
        assert.match(seeded.stderr, /seed: 5000 \/ 6000 orders/, 'progress per batch');
        assert.match(seeded.stderr, /seed: 6000 \/ 6000 orders/);
        const db = engine === 'pglite' ? await openPglite({ dataDir }) : openPostgres(env.DATABASE_URL!, 1);
        try {
          assert.deepEqual(await db.query(`SELECT count(*)::int AS n FROM users WHERE role = 'customer'`), [{ n: 40 }]);
          const statuses = (
            await db.query<{ status: string }>('SELECT DISTINCT status FROM orders ORDER BY status')
          ).map((r) => r.status);
          assert.deepEqual(statuses, ['cancelled', 'fulfilled', 'paid', 'payment_failed']);
          // Newest first by id is newest first by time, and every order has its history.
          assert.deepEqual(
            await db.query(
              `SELECT count(*)::int AS n FROM (SELECT id, created_at, lag(created_at) OVER (ORDER BY id) AS before FROM orders) o WHERE created_at < before`,
            ),
            [{ n: 0 }],
          );
          assert.deepEqual(
            await db.query(
              'SELECT count(*)::int AS n FROM orders o WHERE NOT EXISTS (SELECT 1 FROM order_status_changes h WHERE h.order_id = o.id AND h.to_status = o.status)',
            ),
            [{ n: 0 }],
          );
        } finally {
          await db.close();
        }
        const audit = await complete(['audit'], env);
        assert.equal(audit.code, 0, audit.stdout);
        const bad = await complete(['seed', '--orders', 'many'], env);
        assert.equal(bad.code, 2);
        assert.match(bad.stderr, /--orders must be a whole number/);
      } finally {
        await drop();
      }
    });
  }
});

describe('engine-room start on the embedded database', () => {
  let dataDir: string;
  let adminEmail: string;
  let adminPassword: string;

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'er-cli-'));
  });
  after(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  async function login(base: string, email: string, password: string): Promise<number> {
    const res = await fetch(`${base}/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, password }),
    });
    return res.status;
  }

  it('on a fresh DATA_DIR: serves /healthz, prints where it listens and the admin account, and stops cleanly on SIGTERM', async () => {
    const server = run(['start'], { PORT: '0', DATA_DIR: dataDir, LOG_LEVEL: 'info' });
    const [, base, port] = await server.waitForStderr(/listening on (http:\/\/127\.0\.0\.1:(\d+))/);
    assert.notEqual(Number(port), 0, 'the real port is printed, not the 0 that was asked for');
    assert.match(server.stderr(), new RegExp(`API reference: ${base}/docs`));
    assert.doesNotMatch(server.stderr(), /fsync/, 'no durability warning outside production');
    const [, email, password] = await server.waitForStderr(/Created the admin account (\S+) with password (\S+)/);
    adminEmail = email!;
    adminPassword = password!;

    const health = await fetch(`${base}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: 'ok' });
    assert.equal(await login(base!, adminEmail, adminPassword), 200);
    assert.ok(existsSync(join(dataDir, 'postmaster.pid')), 'PGlite holds its data directory while running');
    // A second process on the same files would corrupt them: it is refused before it opens them.
    const second = await complete(['migrate'], { DATA_DIR: dataDir });
    assert.equal(second.code, 1);
    assert.ok(second.stderr.includes(`${dataDir} is in use by process ${server.child.pid}`), second.stderr);
    assert.equal((await fetch(`${base}/healthz`)).status, 200, 'the running server is unaffected');

    server.child.kill('SIGTERM');
    const { code, signal } = await server.exited;
    assert.deepEqual({ code, signal }, { code: 0, signal: null });
    // PGlite removes its pid file only when it is closed properly.
    assert.equal(existsSync(join(dataDir, 'postmaster.pid')), false, 'PGlite was closed cleanly');
    assert.equal(existsSync(join(dataDir, 'engine-room.pid')), false, 'the data directory was given up');
    // Logs are JSON lines; the generated password went to the terminal, never into a log line.
    const logLines = server.stdout().trim().split('\n');
    assert.ok(
      logLines.every((line) => {
        JSON.parse(line);
        return true;
      }),
    );
    assert.ok(logLines.some((line) => JSON.parse(line).msg === 'stopped'));
    assert.ok(!server.stdout().includes(adminPassword));
  });

  it('restarts on the same DATA_DIR with its data, and does not create or print an admin again', async () => {
    assert.ok(adminPassword, 'the first start ran');
    // In production too, where the embedded database gets a warning: it never fsyncs. And an
    // ADMIN_PASSWORD set now is not applied (the admin exists): the start says so.
    // What a production start needs besides (see productionRefusals): nothing is mailed here.
    const server = run(['start'], {
      PORT: '0',
      DATA_DIR: dataDir,
      LOG_LEVEL: 'warn',
      NODE_ENV: 'production',
      ADMIN_PASSWORD: 'a-new-password-that-is-ignored',
      METRICS_TOKEN: 'cli-test-metrics-token',
      SMTP_URL: 'smtp://127.0.0.1:1',
    });
    const [, base] = await server.waitForStderr(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
    assert.match(server.stderr(), /^Warning: NODE_ENV is production but DATABASE_URL is not set: .*fsync.*power loss/m);
    await server.waitForStderr(/warning: ADMIN_PASSWORD ignored: .*has another password.*unset ADMIN_PASSWORD/);
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
    // The admin made by the first start is still there, with the password printed then.
    assert.equal(await login(base!, adminEmail, adminPassword), 200);
    server.child.kill('SIGTERM');
    const { code } = await server.exited;
    assert.equal(code, 0);
    assert.doesNotMatch(server.stderr(), /admin account/);
    const warned = server
      .stdout()
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line))
      .find((line) => /fsync/.test(line.msg));
    assert.equal(warned?.level, 40, 'the warning is logged too, at level warn');
  });
});

describe('engine-room migrate on PostgreSQL', () => {
  it(
    'applies the migrations to a fresh database and exits 0; a second run has nothing to do',
    { skip: !postgresUrl && 'TEST_DATABASE_URL is not set' },
    async () => {
      const name = `er_cli_${randomBytes(5).toString('hex')}`;
      const admin = new pg.Client({ connectionString: postgresUrl });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${name}`);
      const url = new URL(postgresUrl!);
      url.pathname = '/' + name;
      try {
        const first = await complete(['migrate'], { DATABASE_URL: url.toString(), LOG_LEVEL: 'info' });
        assert.equal(first.code, 0, first.stderr + first.stdout);
        assert.match(first.stderr, /migrations are current/);
        const db = openPostgres(url.toString(), 1);
        try {
          const rows = await db.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
          assert.deepEqual(
            rows.map((r) => r.version),
            (await loadMigrations()).map((m) => m.version),
          );
          assert.deepEqual(await db.query("SELECT to_regclass('users') IS NOT NULL AS present"), [{ present: true }]);
        } finally {
          await db.close();
        }
        const second = await complete(['migrate'], { DATABASE_URL: url.toString(), LOG_LEVEL: 'info' });
        assert.equal(second.code, 0);
        assert.doesNotMatch(second.stdout, /applied/);
      } finally {
        await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await admin.end();
      }
    },
  );
});

for (const engine of engines('parity')) {
  describe(`a failing migration [${engine}]`, () => {
    let db: Db;
    let drop: () => Promise<void>;

    // Not the migrated template: a database that has never seen a migration.
    before(async () => {
      if (engine === 'pglite') {
        db = await openPglite({});
        drop = () => db.close();
        return;
      }
      const name = `er_mig_${randomBytes(5).toString('hex')}`;
      const admin = new pg.Client({ connectionString: postgresUrl });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${name}`);
      await admin.end();
      const url = new URL(postgresUrl!);
      url.pathname = '/' + name;
      db = openPostgres(url.toString(), 2);
      drop = async () => {
        await db.close();
        const c = new pg.Client({ connectionString: postgresUrl });
        await c.connect();
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await c.end();
      };
    });
    after(async () => {
      await drop?.();
    });

    it('throws MigrationError naming it, and leaves the database exactly as it was', async () => {
      const real = await loadMigrations();
      const broken: Migration = {
        version: 9999,
        name: '9999_broken',
        sql: 'CREATE TABLE ok_then(x int); SELECT * FROM no_such_table;',
      };
      await assert.rejects(migrate(db, [...real, broken]), (err: unknown) => {
        assert.ok(err instanceof MigrationError, String(err));
        assert.equal(err.migration, '9999_broken');
        assert.match(err.message, /9999_broken/);
        assert.match(err.message, /no_such_table/);
        return true;
      });
      const [state] = await db.query<{ ok_then: boolean; migrations: boolean; users: boolean }>(
        `SELECT to_regclass('ok_then') IS NOT NULL AS ok_then, to_regclass('schema_migrations') IS NOT NULL AS migrations,
                to_regclass('users') IS NOT NULL AS users`,
      );
      // All pending migrations run in one transaction: the good ones before the broken one are undone too.
      assert.deepEqual(state, { ok_then: false, migrations: false, users: false });
    });

    it('leaves a database already migrated as it was, without recording the broken one', async () => {
      const real = await loadMigrations();
      assert.deepEqual(
        await migrate(db, real),
        real.map((m) => m.name),
        'the database is usable after the failure',
      );
      const broken: Migration = {
        version: 9999,
        name: '9999_broken',
        sql: 'CREATE TABLE ok_then(x int); SELECT * FROM no_such_table;',
      };
      await assert.rejects(migrate(db, [...real, broken]), MigrationError);
      const versions = (
        await db.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version')
      ).map((r) => r.version);
      assert.deepEqual(
        versions,
        real.map((m) => m.version),
      );
      assert.deepEqual(await db.query("SELECT to_regclass('ok_then') IS NULL AS absent"), [{ absent: true }]);
    });
  });
}
