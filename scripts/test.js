// Runs the test files with Node's test runner, straight from their TypeScript (Node strips the
// types). A file list rather than a directory or a glob, because the runner's argument rules differ
// between Node versions.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function find(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return find(path);
    return name.endsWith('.test.ts') ? [path] : [];
  });
}

const only = process.argv.slice(2);
const files = find('test')
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();
if (files.length === 0) {
  console.error('no test files found under test/');
  process.exit(1);
}
const concurrency = process.env.TEST_CONCURRENCY ?? '3';
const onEngines = !process.env.TEST_DATABASE_URL
  ? 'PGlite'
  : process.env.TEST_ENGINES === 'postgres'
    ? 'PostgreSQL'
    : process.env.TEST_ENGINES === 'all'
      ? 'PGlite and PostgreSQL (every file)'
      : 'PGlite and PostgreSQL (each file by its matrix: docs/TESTING.md)';
console.error(`running ${files.length} test files (concurrency ${concurrency}) on ${onEngines}`);
if (process.env.TEST_BAIL === '1') {
  // Mutation testing (scripts/mutate.ts): stop at the first failing test, since one is enough to
  // kill a mutant. One runner per file (so each streams its results as they come, which the
  // combined runner does not), `concurrency` at a time; at the first failure every one is killed.
  const running = new Set();
  const queue = [...files];
  const bail = (reason) => {
    console.error(`bail: ${reason}`);
    for (const child of running) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    process.exit(1);
  };
  const next = () => {
    const file = queue.shift();
    if (file === undefined) {
      if (running.size === 0) process.exit(0);
      return;
    }
    const child = spawn(process.execPath, ['--test', '--test-isolation=none', '--test-reporter=tap', file], {
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: true,
    });
    running.add(child);
    let buffered = '';
    child.stdout.on('data', (chunk) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      const failure = lines.find((line) => /^\s*not ok /.test(line));
      if (failure) bail(`${file}: ${failure.trim()}`);
    });
    child.on('exit', (code) => {
      running.delete(child);
      if (code !== 0) bail(`${file} exited with ${code}`);
      next();
    });
  };
  for (let i = 0; i < Number(concurrency); i++) next();
} else {
  // Beside the console output: a JUnit report (test-results/junit.xml, for CI's test views) and each
  // file's wall time, of which the slowest are printed at the end, so the next slow file is seen
  // when it lands.
  mkdirSync('test-results', { recursive: true });
  const reporters = [
    ['spec', 'stdout'],
    ['junit', 'test-results/junit.xml'],
    ['./scripts/test-durations.js', 'test-results/durations.tsv'],
  ].flatMap(([reporter, destination]) => [`--test-reporter=${reporter}`, `--test-reporter-destination=${destination}`]);
  const result = spawnSync(process.execPath, ['--test', `--test-concurrency=${concurrency}`, ...reporters, ...files], {
    stdio: 'inherit',
  });
  try {
    const slowest = readFileSync('test-results/durations.tsv', 'utf8').split('\n').filter(Boolean).slice(0, 10);
    console.error(`\nslowest test files (wall seconds, ${concurrency} at a time; all in test-results/durations.tsv):`);
    for (const line of slowest) console.error(`  ${line.replace('\t', '  ')}`);
  } catch {
    // No durations (the runner failed before any file ran): the runner's own output says why.
  }
  process.exit(result.status ?? 1);
}
