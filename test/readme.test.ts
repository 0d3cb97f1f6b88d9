// The README's walk-through, run as a reader would: its ```sh blocks, in order, in one bash, against
// a fresh `engine-room start`, each answer compared with the block shown after it. Compared is the
// shape (keys, types, array lengths) and every value that does not vary between runs (statuses,
// codes, amounts, messages); ids, tokens and timestamps are not. So the README cannot drift from the
// server again. README_PRINT=1 prints what each block answered, to update the README from.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../src/platform/paths.ts';
import { engines } from './support/database.ts';
import { startFreshServer, type RunningServer } from './support/engine-process.ts';

export interface Step {
  commands: string;
  expected: string;
  stopServerFirst: boolean;
}

/** The walk-through's steps: each ```sh block with the answer block that follows it (none: no output). */
export function walkthrough(markdown: string): Step[] {
  const start = markdown.indexOf('\n## A walk through the API');
  assert.ok(start >= 0, 'the README has its walk-through section');
  const end = markdown.indexOf('\n## ', start + 1);
  const section = markdown.slice(start, end < 0 ? undefined : end);
  const steps: Step[] = [];
  const fence = /(<!-- walkthrough: stop the server -->\s*)?```(\w*)\n([\s\S]*?)```/g;
  for (const m of section.matchAll(fence)) {
    const [, marker, lang, body] = m;
    if (lang === 'sh') steps.push({ commands: body!, expected: '', stopServerFirst: Boolean(marker) });
    else if (steps.length > 0 && steps.at(-1)!.expected === '') steps.at(-1)!.expected = body!;
  }
  return steps;
}

const opaque = [
  /\b(usr|prd|var|ord|pay|whe|evt|cnv|msg|key|ses|job|chg|ref|rfd|eml|ers|erk|whsec)_[A-Za-z0-9_-]+/g,
  /\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z\b/g,
  /\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/g,
];

/** A string whose value changes from run to run: an id, a token, a timestamp, a random secret. */
function varies(value: string): boolean {
  return (
    opaque.some((re) => {
      re.lastIndex = 0;
      return re.test(value);
    }) || /^[A-Za-z0-9_-]{32,}$/.test(value)
  );
}

function normaliseText(line: string): string {
  let out = line.replace(/\r$/, '');
  for (const re of opaque) out = out.replace(re, '<id>');
  return out;
}

/** Differences between an answer and the README's, as paths; empty when they match. */
export function compareShape(expected: unknown, actual: unknown, path = ''): string[] {
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return [`${path}: an array in the README, ${JSON.stringify(actual)} here`];
    if (expected.length !== actual.length)
      return [`${path}: ${expected.length} items in the README, ${actual.length} here`];
    return expected.flatMap((e, i) => compareShape(e, actual[i], `${path}/${i}`));
  }
  if (expected !== null && typeof expected === 'object') {
    if (actual === null || typeof actual !== 'object' || Array.isArray(actual))
      return [`${path}: an object in the README, ${JSON.stringify(actual)} here`];
    const e = Object.keys(expected).sort();
    const a = Object.keys(actual).sort();
    if (e.join() !== a.join()) return [`${path}: keys ${e.join(',')} in the README, ${a.join(',')} here`];
    return e.flatMap((k) =>
      compareShape((expected as Record<string, unknown>)[k], (actual as Record<string, unknown>)[k], `${path}/${k}`),
    );
  }
  if (typeof expected !== typeof actual || (expected === null) !== (actual === null))
    return [`${path}: ${JSON.stringify(expected)} in the README, ${JSON.stringify(actual)} here`];
  if (typeof expected === 'string' && varies(expected) && varies(actual as string)) return [];
  return expected === actual
    ? []
    : [`${path}: ${JSON.stringify(expected)} in the README, ${JSON.stringify(actual)} here`];
}

/** Compares an answer block line by line: JSON (after an optional `data: `) by shape, other text with its ids masked. */
export function compareAnswer(expected: string, actual: string): string[] {
  // Comment lines of an event stream (`: ping`) are keep-alives that come when they come.
  const lines = (text: string) =>
    text
      .split('\n')
      .map((l) => l.replace(/\r$/, ''))
      .filter((l) => !l.startsWith(': '))
      .join('\n')
      .trim()
      .split('\n');
  const e = lines(expected);
  const a = lines(actual);
  if (e.length !== a.length) return [`${e.length} lines in the README, ${a.length} here:\n${actual}`];
  return e.flatMap((line, i) => {
    const prefix = /^(data: )?[[{]/.exec(line)?.[1] ?? '';
    if (/^(data: )?[[{]/.test(line)) {
      try {
        const diffs = compareShape(JSON.parse(line.slice(prefix.length)), JSON.parse(a[i]!.slice(prefix.length)));
        return diffs.map((d) => `line ${i + 1}${d}`);
      } catch {
        return [`line ${i + 1}: not JSON here: ${a[i]}`];
      }
    }
    return normaliseText(line) === normaliseText(a[i]!)
      ? []
      : [`line ${i + 1}: ${JSON.stringify(line)} in the README, ${JSON.stringify(a[i])} here`];
  });
}

/** Runs steps in one bash (so variables carry over), each step's output in a file of its own. */
async function runSteps(steps: Step[], env: Record<string, string>, dir: string, offset: number): Promise<string[]> {
  const script = steps.map((s, i) => `{\n${s.commands}\n} > ${join(dir, `out-${offset + i}.txt`)} 2>&1`).join('\n');
  const run = spawnSync('bash', ['-c', script], { cwd: packageRoot, env, encoding: 'utf8', timeout: 240_000 });
  assert.equal(run.error, undefined, String(run.error));
  return Promise.all(steps.map((_, i) => readFile(join(dir, `out-${offset + i}.txt`), 'utf8')));
}

describe('the README walk-through', () => {
  const steps = walkthrough(readFileSync(join(packageRoot, 'README.md'), 'utf8'));

  it('is found, with an answer shown for the steps that answer', () => {
    assert.ok(steps.length >= 15, `${steps.length} steps`);
    assert.ok(
      steps[0]!.commands.match(/^API=http:\/\/127\.0\.0\.1:3000$/m),
      "the first step sets API to the quick start's address",
    );
    assert.ok(
      steps[0]!.commands.match(/^ADMIN_PASSWORD='[^']+'/m),
      'the first step keeps the admin password the first start printed',
    );
  });

  for (const engine of engines('one')) {
    describe(`runs as written against a fresh server [${engine}]`, () => {
      let server: RunningServer;
      let dir: string;
      before(async () => {
        dir = await mkdtemp(join(tmpdir(), 'er-readme-'));
        server = await startFreshServer(engine);
      });
      after(async () => {
        await server?.stop();
        await rm(dir, { recursive: true, force: true });
      });

      it('every step answers what the README shows', async () => {
        const password = /Created the admin account admin@engine-room\.local with password (\S+)/.exec(
          server.engine.stderr(),
        )?.[1];
        assert.ok(password, `the start printed the admin password:\n${server.engine.stderr()}`);
        // As the reader does: the address the server printed, the password it printed.
        const runnable = steps.map((s, i) =>
          i > 0
            ? s
            : {
                ...s,
                commands: s.commands
                  .replace(/^API=.*$/m, `API=${server.baseUrl}`)
                  .replace(/^ADMIN_PASSWORD=.*$/m, `ADMIN_PASSWORD='${password}'`),
              },
        );
        const stopAt = runnable.findIndex((s) => s.stopServerFirst);
        const env = {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: process.env.HOME ?? tmpdir(),
          LOG_LEVEL: 'warn',
          ...server.env,
        };
        const outputs = await runSteps(stopAt < 0 ? runnable : runnable.slice(0, stopAt), env, dir, 0);
        if (stopAt >= 0) {
          await server.engine.kill('SIGTERM');
          outputs.push(...(await runSteps(runnable.slice(stopAt), env, dir, stopAt)));
        }
        if (process.env.README_PRINT)
          await writeFile(
            join(tmpdir(), `readme-answers-${engine}.txt`),
            outputs.map((o, i) => `### step ${i + 1}\n${runnable[i]!.commands}---\n${o}`).join('\n'),
          );
        const failures = runnable.flatMap((s, i) =>
          compareAnswer(s.expected, outputs[i]!).map(
            (d) => `step ${i + 1} (${s.commands.trim().split('\n')[0]}): ${d}`,
          ),
        );
        assert.deepEqual(failures, []);
      });
    });
  }
});
