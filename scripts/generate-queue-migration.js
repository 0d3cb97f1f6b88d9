// Writes src/db/migrations/0004_queue.sql: pg-boss's own schema, taken from the installed pg-boss
// (PgBoss.getConstructionPlans), so that pg-boss never has to build or migrate it at start.
//   node scripts/generate-queue-migration.js           rewrite the file
//   node scripts/generate-queue-migration.js --check   exit 1 when the file differs (CI, after an upgrade)
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const PgBoss = require('pg-boss');
const { version } = require('pg-boss/package.json');
const { schema: schemaVersion } = require('pg-boss/version.json');

const schema = 'pgboss';
const target = fileURLToPath(new URL('../src/db/migrations/0004_queue.sql', import.meta.url));

// pg-boss wraps its plan in BEGIN; SET LOCAL ...; <advisory lock>; ...; COMMIT; for running it on its
// own. migrate.ts already runs each migration inside one transaction under its own lock, and a COMMIT
// in the middle would end that transaction early, so only the statements between are kept.
const plan = PgBoss.getConstructionPlans(schema);
const wrapper =
  /^\s*BEGIN;\s*SET LOCAL lock_timeout = '30s';\s*SET LOCAL idle_in_transaction_session_timeout = '30s';\s*SELECT pg_advisory_xact_lock\([\s\S]*?\);([\s\S]*?)COMMIT;\s*$/;
const match = wrapper.exec(plan);
if (!match) {
  console.error(
    `pg-boss ${version}: its construction plan no longer has the expected BEGIN ... COMMIT shape; update this script`,
  );
  process.exit(1);
}
const body = match[1]
  .split('\n')
  .map((line) => line.replace(/\s+$/, '').replace(/^ {4}/, ''))
  .join('\n')
  .replace(/\n\s*;(?=\n)/g, ';')
  .replace(/\n{3,}/g, '\n\n')
  .trim();
if (!body.includes(`INSERT INTO ${schema}.version(version) VALUES ('${schemaVersion}')`)) {
  console.error(`pg-boss ${version}: the plan does not record schema version ${schemaVersion}; update this script`);
  process.exit(1);
}

const sql = `-- The durable job queue: pg-boss's tables, in the "${schema}" schema.
-- GENERATED from pg-boss ${version} (its schema version ${schemaVersion}) by scripts/generate-queue-migration.js:
-- PgBoss.getConstructionPlans('${schema}') without its BEGIN/COMMIT wrapper and advisory lock (this
-- migration already runs in one transaction under migrate.ts's lock). Do not edit by hand.
-- pg-boss is started with migrate: false and only checks that ${schema}.version holds ${schemaVersion}. A pg-boss
-- upgrade that changes its schema version needs a new migration built from
-- PgBoss.getMigrationPlans('${schema}', ${schemaVersion}), or it refuses to start ("requires migrations").

${body}

-- The queue pg-boss's cron timekeeper relays scheduled jobs through. Created here so that starting a
-- worker with scheduling on runs no DDL (create_queue is a no-op when the queue exists).
SELECT ${schema}.create_queue('__pgboss__send-it', '{"policy":"standard"}');
`;

if (process.argv.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(target, 'utf8');
  } catch {
    /* missing counts as different */
  }
  if (current !== sql) {
    console.error(`${target} is not what pg-boss ${version} generates; run node scripts/generate-queue-migration.js`);
    process.exit(1);
  }
  console.error(`${target} matches pg-boss ${version}`);
} else {
  writeFileSync(target, sql);
  console.error(`wrote ${target} from pg-boss ${version} (schema version ${schemaVersion})`);
}
