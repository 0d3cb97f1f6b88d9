// A reporter for Node's test runner: the wall time of each test file, from its first event to its
// last, slowest first, one "seconds<TAB>file" line each. Node's JUnit report times test cases, not
// the hooks around them that start a file's environment, which is where a slow file spends its time.
import { relative } from 'node:path';
import { performance } from 'node:perf_hooks';

export default async function* durations(source) {
  const seen = new Map();
  for await (const event of source) {
    const file = event.data?.file;
    if (!file?.endsWith('.test.ts')) continue; // events of hooks in test/support name that file
    const now = performance.now();
    const span = seen.get(file);
    if (span) span.last = now;
    else seen.set(file, { first: now, last: now });
  }
  const rows = [...seen].map(([file, { first, last }]) => [(last - first) / 1000, relative(process.cwd(), file)]);
  rows.sort((a, b) => b[0] - a[0]);
  for (const [seconds, file] of rows) yield `${seconds.toFixed(1)}\t${file}\n`;
}
