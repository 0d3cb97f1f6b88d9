// A reporter for Node's test runner: the wall time of each test file, from its first event to its
// last, slowest first, one "seconds<TAB>file" line each. Node's JUnit report times test cases, not
// the hooks around them that start a file's environment, which is where a slow file spends its time.
import { relative } from 'node:path';
import { performance } from 'node:perf_hooks';

//
// Each file runs in a process of its own, which the runner reports as a test named after the file:
// its test:complete carries the process's wall time, used when it comes. (The span from the first
// event to the last is only a fallback: the runner queues every file at the start, so with several
// files that span began before the file's process did.)
export default async function* durations(source) {
  const seen = new Map();
  const walls = new Map();
  for await (const event of source) {
    const file = event.data?.file;
    if (!file?.endsWith('.test.ts')) continue; // events of hooks in test/support name that file
    if (event.type === 'test:complete' && event.data.nesting === 0 && file.endsWith(event.data.name) && event.data.details?.duration_ms !== undefined) {
      walls.set(file, event.data.details.duration_ms / 1000);
      continue;
    }
    if (event.type === 'test:enqueue' || event.type === 'test:dequeue') continue;
    const now = performance.now();
    const span = seen.get(file);
    if (span) span.last = now;
    else seen.set(file, { first: now, last: now });
  }
  const rows = [...seen].map(([file, { first, last }]) => [walls.get(file) ?? (last - first) / 1000, relative(process.cwd(), file)]);
  for (const [file, wall] of walls) if (!seen.has(file)) rows.push([wall, relative(process.cwd(), file)]);
  rows.sort((a, b) => b[0] - a[0]);
  for (const [seconds, file] of rows) yield `${seconds.toFixed(1)}\t${file}\n`;
}
