// pg-boss over our connections: its executeSql port on the database (or on the caller's
// transaction), the instances that only build SQL and never start, and the upkeep of its tables.
// On PGlite everything goes through its one connection: pg-boss's own transactions (maintenance)
// run through db.transaction, which holds PGlite's exclusive lock; enqueue runs on the caller's Tx
// and never through db, so it cannot wait on the transaction it is part of.
import PgBoss from 'pg-boss';
import type { Db, Queryable, Tx } from '../db.ts';

/** The schema of pg-boss's tables (migration 0004). */
export const schema = 'pgboss';

// pg-boss runs its maintenance as one text "BEGIN; SET LOCAL ...; <advisory lock>; ...; COMMIT;".
// Sent as one string, a failure would leave a pooled connection inside an aborted transaction, and
// PGlite's query() takes one statement; so the body runs in one of our transactions instead.
const transactionScript = /^\s*BEGIN;([\s\S]*)COMMIT;\s*$/;

export function executorOver(db: Db): PgBoss.Db {
  return {
    async executeSql(text: string, values?: unknown[]) {
      const script = values === undefined ? transactionScript.exec(text) : null;
      if (script) {
        await db.transaction((tx) => tx.exec(script[1]!));
        return { rows: [] };
      }
      return { rows: (await db.query(text, values ?? [])) ?? [] };
    },
  };
}

export function executorIn(tx: Tx): PgBoss.Db {
  return {
    executeSql: async (text: string, values?: unknown[]) => ({ rows: (await tx.query(text, values ?? [])) ?? [] }),
  };
}

export const bossDefaults = { schema, migrate: false, supervise: false, schedule: false } as const;

// A pg-boss instance that is never started: it only builds and runs its SQL on the db given, so
// processes that only enqueue or declare queues need no worker machinery.
export function idleBoss(db: PgBoss.Db): PgBoss {
  const boss = new PgBoss({ ...bossDefaults, db });
  boss.on('error', () => {}); // it runs no workers, so it emits nothing; a listener keeps emit from throwing anyway
  return boss;
}

let sender: PgBoss | undefined;
export function senderBoss(): PgBoss {
  // enqueue passes the caller's transaction on every send, so this instance's own db is never used.
  sender ??= idleBoss({ executeSql: () => Promise.reject(new Error('the queue sender has no database of its own')) });
  return sender;
}

/** Whether queue `name` is declared (a row of pg-boss's queue table). */
export async function queueExists(db: Queryable, name: string): Promise<boolean> {
  return (await db.query(`SELECT 1 FROM ${schema}.queue WHERE name = $1`, [name])).length > 0;
}

const deadRowsWorthAVacuum = 1_000;

/**
 * VACUUMs the job tables with at least minDeadRows dead rows; answers the tables vacuumed. A job
 * row is written three times (created, active, completed), and each dead version stays in the
 * fetch index until VACUUM: under load the fetch of the next job read tens of thousands of dead
 * entries while autovacuum, at most once a minute, had not come by (platform/upkeep.ts runs this).
 * SKIP_LOCKED: a table another process is vacuuming is left to it.
 */
export async function vacuumJobTables(db: Db, minDeadRows = deadRowsWorthAVacuum): Promise<string[]> {
  const tables = await db.query<{ name: string }>(
    'SELECT relid::regclass::text AS name FROM pg_stat_user_tables WHERE schemaname = $1 AND n_dead_tup >= $2 ORDER BY n_dead_tup DESC',
    [schema, minDeadRows],
  );
  // The names come from the catalog, quoted by regclass.
  for (const t of tables) await db.exec(`VACUUM (SKIP_LOCKED) ${t.name}`);
  return tables.map((t) => t.name);
}
