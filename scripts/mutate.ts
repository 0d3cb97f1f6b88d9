// Mutation testing of the modules that guard money, stock and events (StrykerJS, command runner).
// Not part of `npm test` or CI: every mutant costs one run of a few test files.
//
//   npm run mutate                    every group
//   npm run mutate -- events limits   only the named groups
//   (groups: ledger lifecycle payments inventory place idempotency limits events audit)
//
// Node runs the .ts sources directly, so Stryker only instruments them (its TypeScript parser keeps the
// types, which Node strips) and runs a command per mutant: no transpiler, no type checker. Each group
// runs only the test files that exercise its modules, on the embedded database (TEST_DATABASE_URL is
// dropped), which keeps one mutant at a few seconds. Results: a table per file on stdout, and per
// group the counts and the mutants that survived in reports/mutation/<group>.json.
import { mkdir, writeFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { Stryker } from '@stryker-mutator/core';

interface Group { mutate: string[]; tests: string[] }

// One group per module, in order of what they guard (money, stock, replays, limits, the event
// stream), each with the test files that exercise it; a group's results are written when it ends.
const groups: Record<string, Group> = {
  ledger: { mutate: ['src/modules/ledger/ledger.ts'], tests: ['ledger', 'audit', 'payments.test'] },
  lifecycle: { mutate: ['src/modules/orders/lifecycle.ts'], tests: ['orders.test', 'payments.test'] },
  payments: { mutate: ['src/modules/payments/service.ts'], tests: ['payments.test', 'money'] },
  inventory: { mutate: ['src/modules/catalog/inventory.ts'], tests: ['catalog', 'orders.test', 'orders-concurrency'] },
  place: { mutate: ['src/modules/orders/place.ts'], tests: ['orders.test', 'orders-concurrency', 'orders-batch', 'money'] },
  idempotency: { mutate: ['src/platform/idempotency.ts'], tests: ['idempotency', 'orders-batch', 'hostile-bodies'] },
  limits: { mutate: ['src/platform/rate-limit.ts'], tests: ['rate-limit', 'login-throttling'] },
  events: { mutate: ['src/platform/event-stream.ts'], tests: ['event-stream'] },
  audit: { mutate: ['src/modules/ledger/audit.ts'], tests: ['audit', 'money'] },
};

const wanted = process.argv.slice(2);
for (const name of wanted) if (!groups[name]) throw new Error(`unknown group ${name}; groups: ${Object.keys(groups).join(', ')}`);
const concurrency = Number(process.env.MUTATE_CONCURRENCY ?? 2);
// The embedded database only: PostgreSQL would double the time and share one server between mutants.
delete process.env.TEST_DATABASE_URL;
// Several mutants run at once on a shared machine: two test files at a time per mutant, and each
// run stops at its first failure (scripts/test.js), since one failure kills the mutant.
process.env.TEST_CONCURRENCY ??= '2';
process.env.TEST_BAIL = '1';

interface Tally { killed: number; survived: number; timeout: number; noCoverage: number; errors: number }
const tallies = new Map<string, Tally>();

for (const [name, group] of Object.entries(groups)) {
  if (wanted.length > 0 && !wanted.includes(name)) continue;
  const started = Date.now();
  console.log(`\n== ${name}: ${group.mutate.join(', ')} (tests: ${group.tests.join(', ')})`);
  const results = await new Stryker({
    testRunner: 'command',
    commandRunner: { command: `node scripts/test.js ${group.tests.join(' ')}` },
    mutate: group.mutate,
    checkers: [],
    // Not string literals: here they are SQL (emptied, it fails the first test that reaches it) and
    // messages, and a run per string would double the time for little.
    mutator: { excludedMutations: ['StringLiteral'] },
    coverageAnalysis: 'off',
    concurrency,
    reporters: ['progress'],
    ignorePatterns: ['/docs', '/bench', '/reports', '/.engine-room', '/.cache', '/console/src'],
    tempDirName: '.stryker-tmp',
    // A mutant that hangs a test is detected (a timeout), so the allowance must be well above a
    // normal run on a busy shared machine, or a slow run would count as a detection.
    timeoutMS: 60_000,
    fileLogLevel: 'off',
  }).runMutationTest();
  const left: unknown[] = [];
  const timedOut: unknown[] = [];
  const notRun: unknown[] = [];
  for (const r of results) {
    const file = relative(process.cwd(), r.fileName);
    const t = tallies.get(file) ?? { killed: 0, survived: 0, timeout: 0, noCoverage: 0, errors: 0 };
    if (r.status === 'Killed') t.killed++;
    else if (r.status === 'Timeout') t.timeout++;
    else if (r.status === 'Survived') t.survived++;
    else if (r.status === 'NoCoverage') t.noCoverage++;
    else t.errors++; // CompileError, RuntimeError, Ignored: not counted in the score
    tallies.set(file, t);
    if (r.status === 'Timeout') timedOut.push({ file, line: r.location.start.line, mutator: r.mutatorName, replacement: r.replacement });
    if (r.status !== 'Killed' && r.status !== 'Timeout' && r.status !== 'Survived' && r.status !== 'NoCoverage') {
      notRun.push({ file, line: r.location.start.line, status: r.status, reason: r.statusReason });
    }
    if (r.status === 'Survived' || r.status === 'NoCoverage') {
      left.push({ file, line: r.location.start.line, column: r.location.start.column, mutator: r.mutatorName, replacement: r.replacement });
    }
  }
  await mkdir('reports/mutation', { recursive: true });
  const mine = Object.fromEntries(group.mutate.map((f) => [f, tallies.get(f)]));
  await writeFile(`reports/mutation/${name}.json`, JSON.stringify({ tests: group.tests, tallies: mine, survived: left, timedOut, notRun }, null, 2) + '\n');
  console.log(`== ${name}: ${results.length} mutants in ${Math.round((Date.now() - started) / 1000)} s`);
}

// Score as Stryker counts it: (killed + timeout) / (killed + timeout + survived + no coverage).
console.log('\nfile | killed | timeout | survived | score');
for (const [file, t] of tallies) {
  const detected = t.killed + t.timeout;
  const valid = detected + t.survived + t.noCoverage;
  const score = valid === 0 ? 'n/a' : `${((100 * detected) / valid).toFixed(1)}%`;
  console.log(`${file} | ${t.killed} | ${t.timeout} | ${t.survived + t.noCoverage} | ${score}`);
}
