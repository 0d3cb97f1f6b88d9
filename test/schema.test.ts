import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { packageRoot } from '../src/platform/paths.ts';
import { postgresUrl } from './support/database.ts';

it(
  'the committed src/db/schema.sql is what the migrations build',
  { skip: postgresUrl ? false : 'needs TEST_DATABASE_URL (pg_dump against PostgreSQL)' },
  () => {
    const run = spawnSync(process.execPath, [join(packageRoot, 'scripts', 'dump-schema.js'), '--check'], {
      encoding: 'utf8',
      env: { ...process.env, TEST_DATABASE_URL: postgresUrl },
    });
    assert.equal(run.status, 0, run.stderr);
  },
);
