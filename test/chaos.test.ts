// The chaos run, shortened, as part of the suite: two API and two worker processes on one
// PostgreSQL, processes SIGKILLed and restarted under load from retrying clients, then every
// promise checked (bench/chaos.ts). PostgreSQL itself is not restarted here: other test files use
// the same server at the same time (CI runs `npm run chaos` with the restart as a step of its own).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { packageRoot } from '../src/platform/paths.ts';
import { postgresUrl } from './support/database.ts';

const checks = [
  'every order acknowledged with 201 exists',
  'every retry of a key answered the same order',
  'no order exists that no client asked for',
  'every paid order was charged exactly once by the processor',
  'stock is conserved',
  'stock never went negative',
  'the ledger balances',
  'every payment and refund settled after the drain',
  'the audit passes',
  'no process exited on its own',
];

it(
  'chaos: processes SIGKILLed under retrying load lose, duplicate, double-charge and oversell nothing',
  { timeout: 600_000 },
  async (t) => {
    if (!postgresUrl) {
      t.skip('needs PostgreSQL (TEST_DATABASE_URL): the chaos run puts several processes on one database');
      return;
    }
    const child = spawn(
      process.execPath,
      [
        join(packageRoot, 'bench', 'chaos.ts'),
        '--seconds',
        '30',
        '--clients',
        '8',
        '--min-kills',
        '2',
        '--no-db-restart',
        '--database-url',
        postgresUrl,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));

    assert.equal(code, 0, `the chaos run found violations or failed:\n${stdout}\n${stderr.slice(-4000)}`);
    // --min-kills: the run goes on until it has killed two running processes, however slow the starts.
    assert.match(stdout, /processes killed \(SIGKILL\) and restarted\s+([2-9]|\d\d)/, 'processes were killed');
    for (const name of checks) {
      const line = stdout.split('\n').find((l) => l.startsWith(name));
      assert.ok(line, `the table has the check "${name}":\n${stdout}`);
      assert.match(line!, /\s ok\s/, `check "${name}" holds: ${line}`);
    }
    assert.match(stdout, /chaos: all checks passed/);
  },
);
