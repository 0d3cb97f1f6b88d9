// A reporter for Node's test runner: the wall time of each test file (its process, from start to
// exit), slowest first, one "seconds<TAB>file" line each. Node's JUnit report times test cases,
// not the imports and hooks around them that start a file's environment, which is where a slow
// file spends its time; the runner's own test:complete of the file, at nesting 0, times it whole.
export default async function* durations(source) {
  const rows = [];
  for await (const event of source) {
    if (event.type !== 'test:complete' || event.data.nesting !== 0 || !event.data.name.endsWith('.test.ts')) continue;
    rows.push([event.data.details.duration_ms / 1000, event.data.name]);
  }
  rows.sort((a, b) => b[0] - a[0]);
  for (const [seconds, file] of rows) yield `${seconds.toFixed(1)}\t${file}\n`;
}
