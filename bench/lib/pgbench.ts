// The database alone: the order transaction driven by pgbench (bench/pgbench/*.sql) on a scratch
// database migrated and seeded exactly like the server's, on the same PostgreSQL server. The bench
// divides its HTTP orders/s by this.
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { packageRoot } from '../../src/platform/paths.ts';
import { openPostgres } from '../../src/platform/db.ts';
import { migrate } from '../../src/platform/migrate.ts';
import { loadConfig } from '../../src/config.ts';
import { declareAllQueues } from '../../src/worker.ts';
import { createScratch, type Scratch } from './engine.ts';
import { analyzeSeeded, seedBySql, type SeedOptions } from './seed.ts';

export const pgbenchScripts = {
  steady: 'order.sql',
  hot: 'order-hot.sql',
  hotStockLast: 'order-hot-stock-last.sql',
  /** Written by hand and fixed: the 6 statements an order cannot do without (not generated). */
  minimal: 'minimal-order.sql',
} as const;

/** The scripts generated from the server's own statements (the others are committed by hand). */
export const generatedScripts = ['steady', 'hot', 'hotStockLast'] as const;

export interface PgbenchResult {
  script: string;
  /** What was changed from the script, for the what-if runs. */
  variant?: string;
  clients: number;
  seconds: number;
  tps: number;
  transactions: number;
  failed: number;
  latencyMs: number;
  command: string;
  /** CPU time per transaction, in ms: PostgreSQL's backends and pgbench itself (when measured). */
  cpuPerTx?: { postgres: number; pgbench: number };
}

export function pgbenchPath(): string {
  return process.env.PGBENCH ?? 'pgbench';
}

/** A migrated scratch database with the bench's shop, queues declared, statistics of the seeded tables. */
export async function preparePgbenchDatabase(baseUrl: string, seed: SeedOptions): Promise<Scratch> {
  const scratch = await createScratch(baseUrl, 'pgbench');
  const db = openPostgres(scratch.url, 2);
  try {
    await migrate(db);
    await declareAllQueues(db, loadConfig({ DATABASE_URL: scratch.url }));
    await seedBySql(db, seed);
    await analyzeSeeded(db);
  } catch (err) {
    await db.close();
    await scratch.drop().catch(() => {});
    throw err;
  } finally {
    await db.close().catch(() => {});
  }
  return scratch;
}

export async function runPgbench(o: {
  url: string;
  script: keyof typeof pgbenchScripts;
  clients: number;
  seconds: number;
  vars: Record<string, string | number>;
  /** The script file to run (default: the committed one). */
  file?: string;
  /** A what-if: a derived copy of the script and/or extra environment (PGOPTIONS). */
  variant?: { name: string; file?: string; env?: Record<string, string> };
  onPid?: (pid: number) => void;
}): Promise<PgbenchResult> {
  const file = o.variant?.file ?? o.file ?? join(packageRoot, 'bench', 'pgbench', pgbenchScripts[o.script]);
  const args = [
    '-n',
    '-M',
    'prepared',
    '-c',
    String(o.clients),
    '-j',
    String(Math.min(2, o.clients)),
    '-T',
    String(o.seconds),
    ...Object.entries(o.vars).flatMap(([k, v]) => ['-D', `${k}=${v}`]),
    '-f',
    file,
    o.url,
  ];
  const child = spawn(pgbenchPath(), args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...o.variant?.env },
  });
  if (child.pid) o.onPid?.(child.pid);
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', resolve);
  });
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  const tps = num(/tps = ([\d.]+) \(without initial connection time\)/);
  if (code !== 0 || !Number.isFinite(tps)) throw new Error(`pgbench failed (exit ${code}):\n${out.slice(-3000)}`);
  return {
    script: `bench/pgbench/${pgbenchScripts[o.script]}`,
    ...(o.variant ? { variant: o.variant.name } : {}),
    clients: o.clients,
    seconds: o.seconds,
    tps,
    transactions: num(/number of transactions actually processed: (\d+)/),
    failed: num(/number of failed transactions: (\d+)/) || 0,
    latencyMs: num(/latency average = ([\d.]+) ms/),
    command: `pgbench ${args
      .slice(0, -1)
      .map((a) => (a.includes('/') ? a.replace(packageRoot + '/', '') : a))
      .join(' ')} <url>`,
  };
}

/**
 * What the database alone would do with one thing changed, derived from the steady script: without
 * the pg-boss job inserts, and unchanged but with synchronous_commit off.
 */
export async function whatIfVariants(
  steadyScript: string,
): Promise<{ name: string; file?: string; env?: Record<string, string> }[]> {
  const lines = steadyScript.split('\n');
  const write = async (name: string, edit: (line: string) => string | null) => {
    const file = join(tmpdir(), `er-pgbench-${name}-${process.pid}.sql`);
    await writeFile(
      file,
      lines
        .map((l) => (l.startsWith('--') || l.startsWith('\\') ? l : edit(l)))
        .filter((l) => l !== null)
        .join('\n'),
    );
    return file;
  };
  const isJob = (l: string) => /^INSERT INTO pgboss\.job\b/.test(l.trim());
  return [
    { name: 'without the job inserts', file: await write('no-jobs', (l) => (isJob(l) ? null : l)) },
    { name: 'unchanged, synchronous_commit = off', env: { PGOPTIONS: '-c synchronous_commit=off' } },
  ];
}

/**
 * What the backends of one database wait on, sampled from pg_stat_activity every 100 ms while a
 * run goes ("CPU" when active and waiting on nothing; idle backends are left out).
 */
export function waitEventSampler(serverUrl: string, database: string) {
  const counts = new Map<string, number>();
  let samples = 0;
  let timer: NodeJS.Timeout | undefined;
  const client = new pg.Client({ connectionString: serverUrl });
  client.on('error', () => {});
  const ready = client.connect().catch(() => undefined);
  let busy = false;
  return {
    start(): void {
      counts.clear();
      samples = 0;
      timer = setInterval(() => {
        if (busy) return;
        busy = true;
        void ready
          .then(() =>
            client.query<{ w: string }>(
              `SELECT CASE WHEN wait_event IS NULL THEN 'CPU' ELSE wait_event_type || ':' || wait_event END AS w
             FROM pg_stat_activity WHERE datname = $1 AND state <> 'idle' AND pid <> pg_backend_pid()`,
              [database],
            ),
          )
          .then(
            (r) => {
              samples++;
              for (const { w } of r?.rows ?? []) counts.set(w, (counts.get(w) ?? 0) + 1);
            },
            () => {},
          )
          .finally(() => {
            busy = false;
          });
      }, 100);
    },
    /** Each wait event's share of the backend samples, biggest first. */
    stop(): { event: string; share: number; perSample: number }[] {
      clearInterval(timer);
      const total = [...counts.values()].reduce((a, b) => a + b, 0);
      return [...counts]
        .sort((a, b) => b[1] - a[1])
        .map(([event, n]) => ({ event, share: total ? n / total : 0, perSample: samples ? n / samples : 0 }));
    },
    close: () => client.end().catch(() => {}),
  };
}
