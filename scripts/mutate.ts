// Mutation testing of the modules that guard money, stock and events (StrykerJS, command runner).
// Not part of `npm test` or CI: every mutant costs one run of a few test files.
//
//   npm run mutate                          every group
//   npm run mutate -- events limits         only the named groups
//   npm run mutate -- lifecycle:120-193     a group's lines only (to finish a run that was stopped;
//                                           several ranges of one group may be given)
//   npm run mutate -- --summary             the score per file of what reports/mutation/ holds
//   MUTATE_ENGINE=postgres npm run mutate   on PostgreSQL alone (default: the embedded database)
//   (groups: ledger lifecycle payments sandbox inventory place idempotency limits events audit)
//
// Node runs the .ts sources directly, so Stryker only instruments them (its TypeScript parser keeps the
// types, which Node strips) and runs a command per mutant: no transpiler, no type checker. Each group
// runs only the test files that exercise its modules, on the embedded database (TEST_DATABASE_URL is
// dropped), which keeps one mutant at a few seconds. Each mutant's result is appended to
// reports/mutation/<group>.ndjson as soon as it is known (scripts/mutate-log.ts), so a stopped run
// keeps what it found; the score per file and the mutants left alive are printed from those files.
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Stryker } from '@stryker-mutator/core';

interface Group {
  mutate: string[];
  tests: string[];
}

// One group per module, in order of what they guard (money, stock, replays, limits, the event
// stream), each with the test files that exercise it; a group's results are written when it ends.
const groups: Record<string, Group> = {
  ledger: { mutate: ['src/modules/ledger/ledger.ts'], tests: ['ledger', 'audit', 'payments.test'] },
  lifecycle: { mutate: ['src/modules/orders/lifecycle.ts'], tests: ['orders.test', 'payments.test', 'money'] },
  payments: { mutate: ['src/modules/payments/service.ts'], tests: ['payments.test', 'money'] },
  sandbox: { mutate: ['src/modules/payments/providers/sandbox.ts'], tests: ['payment-providers', 'payments.test'] },
  inventory: {
    mutate: ['src/modules/catalog/inventory.ts'],
    tests: ['catalog', 'orders.test', 'orders-concurrency', 'orders-batch', 'orders-console-api'],
  },
  place: {
    mutate: ['src/modules/orders/place.ts'],
    tests: ['orders.test', 'orders-concurrency', 'orders-batch', 'money', 'idempotency', 'tracing'],
  },
  idempotency: { mutate: ['src/platform/idempotency.ts'], tests: ['idempotency', 'orders-batch', 'hostile-bodies'] },
  limits: { mutate: ['src/platform/rate-limit.ts'], tests: ['rate-limit', 'login-throttling'] },
  events: {
    mutate: ['src/platform/event-stream.ts', 'src/platform/event-stream/*.ts'],
    tests: ['event-stream', 'event-hub'],
  },
  audit: { mutate: ['src/modules/ledger/audit.ts'], tests: ['audit', 'money'] },
};

const args = process.argv.slice(2);
const summaryOnly = args.includes('--summary');
const wanted = new Map<string, string[]>(); // group -> line ranges (none: the whole modules)
for (const arg of args.filter((a) => a !== '--summary')) {
  const [name = '', range] = arg.split(':');
  if (!groups[name]) throw new Error(`unknown group ${name}; groups: ${Object.keys(groups).join(', ')}`);
  if (range !== undefined && !/^\d+-\d+$/.test(range)) throw new Error(`a range is start-end lines: ${arg}`);
  wanted.set(name, [...(wanted.get(name) ?? []), ...(range === undefined ? [] : [range])]);
}
const concurrency = Number(process.env.MUTATE_CONCURRENCY ?? 2);
// The embedded database by default: both engines would double the time per mutant. MUTATE_ENGINE=
// postgres runs the tests on PostgreSQL alone instead (TEST_DATABASE_URL, or the local server):
// about a third faster per mutant here, and it runs the tests that need real concurrency (the row
// locks), which the embedded database, one connection, skips. docs/TESTING.md names the engine of
// each score.
const engine = process.env.MUTATE_ENGINE ?? 'pglite';
if (engine === 'postgres') {
  process.env.TEST_DATABASE_URL ||= 'postgres://postgres@127.0.0.1:5432/test';
  process.env.TEST_ENGINES = 'postgres';
} else if (engine === 'pglite') {
  delete process.env.TEST_DATABASE_URL;
} else {
  throw new Error(`MUTATE_ENGINE is pglite or postgres, not ${engine}`);
}
// Several mutants run at once on a shared machine: two test files at a time per mutant, and each
// run stops at its first failure (scripts/test.js), since one failure kills the mutant.
process.env.TEST_CONCURRENCY ??= '2';
process.env.TEST_BAIL = '1';
const reports = 'reports/mutation';
await mkdir(reports, { recursive: true });

for (const [name, group] of Object.entries(groups)) {
  if (summaryOnly || (wanted.size > 0 && !wanted.has(name))) continue;
  const ranges = wanted.get(name) ?? [];
  const started = Date.now();
  process.env.MUTATE_LOG = join(process.cwd(), reports, `${name}.ndjson`);
  // Ranges finish an earlier run of the group: their results are added to that run's.
  if (ranges.length === 0) await writeFile(process.env.MUTATE_LOG, '');
  const mutate = ranges.length === 0 ? group.mutate : group.mutate.flatMap((f) => ranges.map((r) => `${f}:${r}`));
  console.log(`\n== ${name}: ${mutate.join(', ')} (tests: ${group.tests.join(', ')}; ${engine})`);
  const results = await new Stryker({
    testRunner: 'command',
    commandRunner: { command: `node scripts/test.js ${group.tests.join(' ')}` },
    mutate,
    checkers: [],
    // Not string literals: here they are SQL (emptied, it fails the first test that reaches it) and
    // messages, and a run per string would double the time for little.
    mutator: { excludedMutations: ['StringLiteral'] },
    coverageAnalysis: 'off',
    concurrency,
    reporters: ['progress', 'mutant-log'],
    appendPlugins: [join(import.meta.dirname, 'mutate-log.ts')],
    ignorePatterns: ['/docs', '/bench', '/reports', '/.engine-room', '/.cache', '/console/src'],
    tempDirName: '.stryker-tmp',
    // A mutant that hangs a test is detected (a timeout), so the allowance must be well above a
    // normal run on a busy shared machine, or a slow run would count as a detection.
    timeoutMS: 60_000,
    fileLogLevel: 'off',
  }).runMutationTest();
  console.log(`== ${name}: ${results.length} mutants in ${Math.round((Date.now() - started) / 1000)} s`);
}

// The score as Stryker counts it: (killed + timeout) / (killed + timeout + survived + no coverage);
// ignored mutants (string literals) are not counted.
interface Line {
  file: string;
  line: number;
  column: number;
  status: string;
  mutator: string;
  replacement?: string;
}
const tallies = new Map<string, Record<string, number>>();
const alive: Line[] = [];
for (const name of (await readdir(reports)).filter((f) => f.endsWith('.ndjson')).sort()) {
  const lines = (await readFile(join(reports, name), 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line);
  for (const l of lines) {
    const t = tallies.get(l.file) ?? {};
    t[l.status] = (t[l.status] ?? 0) + 1;
    tallies.set(l.file, t);
    if (l.status === 'Survived' || l.status === 'NoCoverage') alive.push(l);
  }
}
console.log('\n| file | killed | timed out | survived | score |\n|---|---:|---:|---:|---:|');
for (const [file, t] of tallies) {
  const detected = (t.Killed ?? 0) + (t.Timeout ?? 0);
  const left = (t.Survived ?? 0) + (t.NoCoverage ?? 0);
  const score = detected + left === 0 ? 'n/a' : `${((100 * detected) / (detected + left)).toFixed(1)}%`;
  console.log(`| ${file} | ${t.Killed ?? 0} | ${t.Timeout ?? 0} | ${left} | ${score} |`);
}
console.log('\nalive:');
for (const l of alive) console.log(`${l.file}:${l.line}:${l.column} ${l.mutator} -> ${JSON.stringify(l.replacement)}`);
