// npm run bench:rate-limit: what the API-wide rate limit adds to one request, measured alone.
//
// One process on PostgreSQL (--database-url: a scratch database) or the embedded database (the
// default; its statements run on this very thread, flushes included), requests sent
// with inject (no sockets: what is left is the server's own work per request). The same cheap
// route (GET /v1/auth/session without a token: 200, no database) is asked with the limits on and
// off, in alternating rounds; per round, CPU time and wall time per request. Then the limiter's
// decision alone (take()), without HTTP. The machine may be busy: compare the rounds' medians.
//
//   npm run bench:rate-limit -- [--requests N] [--rounds R] [--database-url URL]
import { parseArgs } from 'node:util';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { openPglite, openPostgres, type Db } from '../src/platform/db.ts';
import { createScratch } from './lib/engine.ts';
import { migrate } from '../src/platform/migrate.ts';
import { createSharedLimiter } from '../src/platform/api-rate-limit.ts';

const { values } = parseArgs({
  options: {
    'database-url': { type: 'string' },
    requests: { type: 'string', default: '5000' },
    rounds: { type: 'string', default: '5' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  process.stdout.write(
    'npm run bench:rate-limit -- [--requests N (per round, default 5000)] [--rounds R (default 5)] [--database-url URL (PostgreSQL; default: the embedded database)]\n',
  );
  process.exit(0);
}
const requests = Number(values.requests);
const rounds = Number(values.rounds);

const scratch = values['database-url'] ? await createScratch(values['database-url'], 'ratelimit') : undefined;
const opened = scratch ? openPostgres(scratch.url, 10) : await openPglite({});
// Counts the limiter's flushes (the only statements on rate_limit_hits here).
let flushes = 0;
const db: Db = {
  ...opened,
  query: (text, params) => {
    if (text.includes('rate_limit_hits')) flushes++;
    return opened.query(text, params);
  },
};
await migrate(db);
const base = {
  LOG_LEVEL: 'silent',
  SHED_TARGET_WAIT_MS: '0',
  SHED_EVENT_LOOP_DELAY_MS: '0',
  SHED_SLOW_UPLOADS_PER_CLIENT: '0',
  RATE_LIMIT_READ_MAX: '100000000',
};
const apps = {
  on: await buildApp(loadConfig({ ...base, RATE_LIMITS: 'on' }), db),
  off: await buildApp(loadConfig({ ...base, RATE_LIMITS: 'off' }), db),
};

let onRequests = 0;
let onSeconds = 0;
async function round(which: 'on' | 'off'): Promise<{ cpuUs: number; wallUs: number }> {
  const app = apps[which];
  const flushesBefore = flushes;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  // 50 callers at a time, each its own client address (as many buckets as a busy server sees).
  for (let i = 0; i < requests; i += 50) {
    await Promise.all(
      Array.from({ length: 50 }, (_, j) =>
        app.inject({ method: 'GET', url: '/v1/auth/session', remoteAddress: `10.0.${(i + j) % 200}.${j}` }),
      ),
    );
    // inject completes in microtasks: without a turn of the event loop no timer (the flush) would run.
    await new Promise((resolve) => setImmediate(resolve));
  }
  const wall = Number(process.hrtime.bigint() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  if (which === 'on') {
    onRequests += requests;
    onSeconds += wall / 1e6;
  }
  if (which === 'off' && flushes !== flushesBefore) flushes = flushesBefore; // the on app's timer, idle: not this round's
  return { cpuUs: (cpu.user + cpu.system) / requests, wallUs: wall / requests };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
await round('on');
await round('off'); // warm-up of both
const results = { on: [] as { cpuUs: number; wallUs: number }[], off: [] as { cpuUs: number; wallUs: number }[] };
for (let r = 0; r < rounds; r++) {
  for (const which of r % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const))
    results[which].push(await round(which));
}
const on = { cpu: median(results.on.map((x) => x.cpuUs)), wall: median(results.on.map((x) => x.wallUs)) };
const off = { cpu: median(results.off.map((x) => x.cpuUs)), wall: median(results.off.map((x) => x.wallUs)) };
await apps.on.close();
await apps.off.close();

// The decision alone: one bucket per caller, 1,000 callers, a limit no one reaches.
const limiter = createSharedLimiter(db, { windowSeconds: 60, syncMs: 200, localSharePercent: 10 });
const decisions = 1_000_000;
const t0 = process.hrtime.bigint();
// A limit no one reaches is decided locally: take answers at once, never a promise to await.
for (let i = 0; i < decisions; i++) void limiter.take(`bench:${i % 1000}`, 100_000_000);
const takeNs = Number(process.hrtime.bigint() - t0) / decisions;
await limiter.stop();
await db.close();
await scratch?.drop();

const f = (x: number) => x.toFixed(1);
process.stdout
  .write(`${scratch ? 'PostgreSQL' : 'the embedded database'}; GET /v1/auth/session by inject, ${requests} requests x ${rounds} rounds each, medians per request:
  limits off  CPU ${f(off.cpu)} us, wall ${f(off.wall)} us
  limits on   CPU ${f(on.cpu)} us, wall ${f(on.wall)} us
  added       CPU ${f(on.cpu - off.cpu)} us, wall ${f(on.wall - off.wall)} us
  flushes     ${flushes} statements for ${onRequests} limited requests in ${onSeconds.toFixed(1)} s (${(flushes / onSeconds).toFixed(1)}/s)
  the decision alone (take(), 1,000 callers): ${takeNs.toFixed(0)} ns
`);
