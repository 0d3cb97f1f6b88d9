// Measures what a newcomer feels: how long `engine-room start` takes until /healthz answers, how
// much memory the process holds once started, and how long one login takes. Two situations, each
// on the embedded database and, with DATABASE_URL, on PostgreSQL:
//
// - the first start after `npm install`: an empty compile cache (Node's cache of compiled,
//   type-stripped modules) and no data yet (initdb and every migration on PGlite; on PostgreSQL an
//   empty scratch database that it creates on that server and drops afterwards);
// - a warm start: the cache and the data of the start before, nothing changed.
//
//   node scripts/measure-start.js [--runs 5]
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test node scripts/measure-start.js
//
// Each figure is the median of --runs starts (the first start's of 3), with the slowest beside it.
import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'src', 'cli.ts');
const logins = 20;
const { values: args } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
const warmRuns = Math.max(1, Number(args.runs));
const firstRuns = Math.min(3, warmRuns);
const adminEmail = 'measure@engine-room.local';
const adminPassword = 'measure-' + randomBytes(12).toString('hex');
const agent = new http.Agent({ keepAlive: true });

if (!existsSync(cli)) {
  console.error(`${cli} is missing`);
  process.exit(1);
}

function request(base, method, path, body) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      new URL(path, base),
      {
        method,
        agent,
        headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {},
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

function residentMb(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
    return Number.isFinite(kb) ? kb / 1024 : undefined;
  } catch {
    return undefined; // not Linux
  }
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** One start: spawn, poll /healthz until 200, read VmRSS, time the logins, stop with SIGTERM. */
async function measure(env) {
  const started = performance.now();
  const child = spawn(process.execPath, [cli, 'start'], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      PORT: '0',
      LOG_LEVEL: 'warn',
      ADMIN_EMAIL: adminEmail,
      ADMIN_PASSWORD: adminPassword,
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const exited = new Promise((resolve) => child.on('close', (code) => resolve(code)));
  try {
    // PORT=0 picks a free port; the process prints which one.
    let base;
    while (!base) {
      if (child.exitCode !== null) throw new Error(`start exited with ${child.exitCode}:\n${stderr}`);
      if (performance.now() - started > 120_000) throw new Error(`no listening line after 120 s:\n${stderr}`);
      base = /listening on (http:\/\/\S+)/.exec(stderr)?.[1];
      if (!base) await sleep(5);
    }
    let status = 0;
    while (status !== 200) {
      status = await request(base, 'GET', '/healthz').catch(() => 0);
      if (status !== 200) await sleep(5);
    }
    const startMs = performance.now() - started;
    const rssMb = residentMb(child.pid);
    const times = [];
    for (let i = 0; i < logins; i++) {
      const t = performance.now();
      const code = await request(base, 'POST', '/v1/auth/login', { email: adminEmail, password: adminPassword });
      times.push(performance.now() - t);
      if (code !== 200) throw new Error(`login answered ${code}`);
    }
    return { startMs, rssMb, loginMs: median(times), createdAdmin: stderr.includes('Created the admin account') };
  } finally {
    child.kill('SIGTERM');
    const code = await exited;
    if (code !== 0) console.error(`warning: the server exited with ${code} on SIGTERM:\n${stderr}`);
  }
}

async function scratchPostgres(url) {
  const name = `er_measure_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const scratch = new URL(url);
  scratch.pathname = '/' + name;
  return {
    url: scratch.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** A fresh place for the data and a fresh compile cache, each dropped after `use`. */
async function fresh(engine, use) {
  const cache = await mkdtemp(join(tmpdir(), 'er-measure-cache-'));
  const dataDir = await mkdtemp(join(tmpdir(), 'er-measure-'));
  const scratch = engine === 'PostgreSQL' ? await scratchPostgres(process.env.DATABASE_URL) : undefined;
  try {
    return await use({
      NODE_COMPILE_CACHE: cache,
      ...(scratch ? { DATABASE_URL: scratch.url } : { DATA_DIR: dataDir }),
    });
  } finally {
    await scratch?.drop();
    await rm(dataDir, { recursive: true, force: true });
    await rm(cache, { recursive: true, force: true });
  }
}

const rows = [];
const fmt = (n, digits = 0) => (n === undefined ? 'n/a' : n.toFixed(digits));
function record(engine, situation, results) {
  const starts = results.map((r) => r.startMs);
  rows.push([
    engine,
    situation,
    String(results.length),
    fmt(median(starts)),
    fmt(Math.max(...starts)),
    fmt(median(results.map((r) => r.rssMb ?? NaN))),
    fmt(median(results.map((r) => r.loginMs)), 1),
  ]);
}

for (const engine of ['PGlite', ...(process.env.DATABASE_URL ? ['PostgreSQL'] : [])]) {
  const first = [];
  let warm = [];
  for (let i = 0; i < firstRuns; i++) {
    await fresh(engine, async (env) => {
      const r = await measure(env);
      if (!r.createdAdmin) throw new Error('the first start did not create the admin: the data was not fresh');
      first.push(r);
      // The warm starts reuse the last first start's cache and data.
      if (i === firstRuns - 1) for (let j = 0; j < warmRuns; j++) warm.push(await measure(env));
    });
  }
  record(engine, 'first start after npm install', first);
  record(engine, 'warm start', warm);
  warm = [];
}
agent.destroy();

const header = [
  'engine',
  'start',
  'runs',
  'start to /healthz, median (ms)',
  'slowest (ms)',
  'RSS after start (MB)',
  `login, median of ${logins} (ms)`,
];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (cells) =>
  '| ' + cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ') + ' |';
console.log(`node ${process.version}, ${process.platform} ${process.arch}`);
console.log(line(header));
console.log('|' + widths.map((w, i) => (i < 2 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|');
for (const r of rows) console.log(line(r));
