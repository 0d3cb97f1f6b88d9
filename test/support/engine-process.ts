// Runs the real `engine-room` command as a child process, for tests that kill and restart it.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../src/platform/paths.ts';
import { freshDatabase, pgliteTemplate, type Engine } from './database.ts';
import { openPglite } from '../../src/platform/db.ts';
import { unthrottled } from './unthrottled.ts';

/**
 * How long a start may take before the test gives up on it: a safety net for a process that hangs,
 * not a window that a start is expected to fit in (a first start on the embedded database runs
 * initdb, and a machine with both cores busy made 60 s too short).
 */
export const startLimitMs = 300_000;

export interface EngineProcess {
  child: ChildProcess;
  /** Everything it wrote to stderr so far. */
  stderr(): string;
  /** Resolves when stderr contains text (or rejects when the process exits first / after timeoutMs). */
  waitFor(text: string | RegExp, timeoutMs?: number): Promise<string>;
  kill(signal: NodeJS.Signals): Promise<number | null>;
}

export function spawnEngine(args: string[], env: Record<string, string>): EngineProcess {
  const child = spawn(process.execPath, [join(packageRoot, 'src', 'cli.ts'), ...args], {
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'warn', ...unthrottled, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  child.stdout!.resume();
  const exited = once(child, 'exit');
  // Whatever happens to the test (a failed assertion, a throw before its cleanup), the child goes
  // with this process: a left-over engine would hold its port and database and load the machine.
  const killOnExit = () => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  void exited.then(() => process.off('exit', killOnExit));
  return {
    child,
    stderr: () => err,
    async waitFor(text, timeoutMs = 30_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const match = typeof text === 'string' ? (err.includes(text) ? text : null) : (text.exec(err)?.[0] ?? null);
        if (match !== null) return match;
        if (child.exitCode !== null || child.signalCode !== null)
          throw new Error(`engine exited before "${text}":\n${err}`);
        if (Date.now() > end) throw new Error(`timed out waiting for "${text}":\n${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async kill(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const [code] = await exited;
      return code as number | null;
    },
  };
}

/**
 * Starts `engine-room start` and answers it with its base URL once it listens. A start that fails
 * (exits first, or hangs past startLimitMs) is killed before the error is thrown, so that it cannot
 * be left behind.
 */
export async function startEngine(env: Record<string, string>): Promise<{ engine: EngineProcess; baseUrl: string }> {
  const engine = spawnEngine(['start'], { PORT: '0', HOST: '127.0.0.1', ...env });
  try {
    const line = await engine.waitFor(/listening on http:\/\/[\d.]+:\d+/, startLimitMs);
    return { engine, baseUrl: line.replace('listening on ', '') };
  } catch (err) {
    await engine.kill('SIGKILL');
    throw err;
  }
}

export interface RunningServer {
  engine: EngineProcess;
  baseUrl: string;
  /** The environment it was started with (DATA_DIR or DATABASE_URL among it), for other commands on the same data. */
  env: Record<string, string>;
  /** SIGTERM, wait for the exit, and drop its data. */
  stop(): Promise<void>;
}

/**
 * `engine-room start` as a real process on fresh data: a new DATA_DIR (restored from the migrated
 * template) for PGlite, a new database (cloned from the migrated template) for PostgreSQL. env adds
 * to what it is started with.
 */
export async function startFreshServer(engine: Engine, env: Record<string, string> = {}): Promise<RunningServer> {
  let data: Record<string, string>;
  let dropData: () => Promise<void>;
  if (engine === 'pglite') {
    // Restored from the migrated template rather than made by initdb, which takes seconds (and far
    // more on a busy machine); the first start's own initdb is tested in test/cli.test.ts.
    const dir = await mkdtemp(join(tmpdir(), 'er-server-'));
    await (await openPglite({ dataDir: dir, loadDataDir: await pgliteTemplate() })).close();
    data = { DATA_DIR: dir };
    dropData = () => rm(dir, { recursive: true, force: true });
  } else {
    const database = await freshDatabase('postgres', 2);
    await database.db.close();
    data = { DATABASE_URL: database.url! };
    dropData = () => database.drop().catch(() => {});
  }
  const fullEnv = { ...data, ...env };
  try {
    const { engine: process, baseUrl } = await startEngine(fullEnv);
    return {
      engine: process,
      baseUrl,
      env: fullEnv,
      async stop() {
        await process.kill('SIGTERM');
        await dropData();
      },
    };
  } catch (err) {
    await dropData();
    throw err;
  }
}
