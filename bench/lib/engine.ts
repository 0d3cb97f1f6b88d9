// Engine Room as real processes for the bench and the chaos run: scratch databases created and
// dropped on a PostgreSQL server, and `engine-room start` / `engine-room worker` children whose
// output goes to log files, which can be killed and started again on the same port.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { packageRoot } from '../../src/platform/paths.ts';

export const defaultDatabaseUrl = 'postgres://postgres@127.0.0.1:5432/test';

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = '/' + database;
  return u.toString();
}

/** Runs fn with a short-lived connection to the server's maintenance database (the URL's own). */
export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {}); // a server restart while connected must not crash the bench
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

export interface Scratch {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/** Creates an empty database named er_<kind>_<random> next to the one baseUrl names. */
export async function createScratch(baseUrl: string, kind: string): Promise<Scratch> {
  const name = `er_${kind}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  await withClient(baseUrl, (c) => c.query(`CREATE DATABASE ${name}`));
  return {
    name,
    url: withDatabase(baseUrl, name),
    drop: () => withClient(baseUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => {}),
  };
}

/** A TCP port nobody listens on right now (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

export type Role = 'api' | 'worker';

export interface EngineSpec {
  role: Role;
  /** A name for logs and tables: api-1, worker-2. */
  label: string;
  env: Record<string, string>;
  /** For role api. */
  port?: number;
  /** Extra node options, e.g. --cpu-prof. */
  nodeArgs?: string[];
  /** Directory for the log files (one per start); none: output discarded. */
  logDir?: string;
}

export interface EngineProcess {
  spec: EngineSpec;
  child: ChildProcess;
  pid: number;
  /** How many times this one has been started (1 on the first). */
  generation: number;
  baseUrl: string | undefined;
  logFile: string | undefined;
  /** stderr seen so far (the banner, the last errors). */
  stderr(): string;
  /** Resolves once it listens (api) or runs its workers (worker); rejects if it exits first. */
  ready: Promise<void>;
  /** Resolves on exit with how it ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  running(): boolean;
  kill(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const readyText: Record<Role, RegExp> = {
  api: /listening on http:\/\/[\d.:[\]a-z]+:\d+/,
  worker: /Engine Room worker running/,
};

export function startEngineProcess(spec: EngineSpec, generation = 1, readyTimeoutMs = 60_000): EngineProcess {
  const args = [...(spec.nodeArgs ?? []), join(packageRoot, 'src', 'cli.ts'), spec.role === 'api' ? 'start' : 'worker'];
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    LOG_LEVEL: 'warn',
    ...spec.env,
    ...(spec.role === 'api' ? { PORT: String(spec.port ?? 0), HOST: '127.0.0.1' } : {}),
  };
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const logFile = spec.logDir ? join(spec.logDir, `${spec.label}.${generation}.log`) : undefined;
  const log = logFile ? createWriteStream(logFile) : undefined;
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    if (err.length > 200_000) err = err.slice(-100_000);
    log?.write(d);
  });
  child.stdout!.on('data', (d: Buffer) => {
    log?.write(d);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      log?.end();
      resolve({ code, signal });
    });
  });
  const proc: EngineProcess = {
    spec,
    child,
    generation,
    logFile,
    pid: child.pid ?? -1,
    baseUrl: undefined,
    stderr: () => err,
    exited,
    running: () => child.exitCode === null && child.signalCode === null,
    ready: Promise.resolve(),
    async kill(signal) {
      if (proc.running()) child.kill(signal);
      return exited;
    },
  };
  proc.ready = new Promise<void>((resolve, reject) => {
    const deadline = Date.now() + readyTimeoutMs;
    const check = () => {
      const match = readyText[spec.role].exec(err);
      if (match) {
        if (spec.role === 'api') proc.baseUrl = match[0].replace('listening on ', '');
        return resolve();
      }
      if (!proc.running()) return reject(new Error(`${spec.label} exited before it was ready:\n${err.slice(-3000)}`));
      if (Date.now() > deadline)
        return reject(new Error(`${spec.label} not ready after ${readyTimeoutMs / 1000}s:\n${err.slice(-3000)}`));
      setTimeout(check, 25);
    };
    check();
  });
  proc.ready.catch(() => {});
  return proc;
}
