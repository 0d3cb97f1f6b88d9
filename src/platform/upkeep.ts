// Upkeep of the tables that grow and churn fastest, from the processes that run the workers, on
// PostgreSQL only (on the embedded database a VACUUM would hold its one connection, and every request
// with it):
// every 10 s, VACUUM of the job tables with many dead rows (queue.ts: vacuumJobTables) and ANALYZE
// of the tables that grew.
//
// Statistics for the planner. A table that grows from empty (every table of a new install) is
// planned with default guesses until it is analyzed, and autovacuum comes by at most once a
// minute: meanwhile `order_id = ANY($1)` over 40 ids was a sequential scan of order_lines (a guess
// of 2,700 rows), and pg-boss's completion of a batch of jobs scanned the whole queue table (68 ms
// instead of 1 ms). Found with pg_stat_statements during the bench; see
// reports/2026-11-28-issue-6-bench.md (item 6).
import type { Db } from './db.ts';
import { poll, vacuumJobTables, type Queue } from './queue.ts';

/**
 * ANALYZEs the tables (of the given schemas) changed by at least minChanges rows, and by at least
 * as many rows as they had when last analyzed: new tables at once, growing ones each time they
 * double, stable ones never (autovacuum keeps those). Answers the tables analyzed.
 */
export async function analyzeChangedTables(db: Db, schemas: string[], minChanges = 1_000): Promise<string[]> {
  const tables = await db.query<{ name: string }>(
    `SELECT s.relid::regclass::text AS name
       FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
      WHERE s.schemaname = ANY($1::text[]) AND s.n_mod_since_analyze >= $2 AND s.n_mod_since_analyze >= greatest(c.reltuples, 0)
      ORDER BY s.n_mod_since_analyze DESC`,
    [schemas, minChanges],
  );
  // The names come from the catalog, quoted by regclass.
  for (const t of tables) await db.exec(`ANALYZE ${t.name}`);
  return tables.map((t) => t.name);
}

const upkeepEveryMs = 10_000;

/** Runs the upkeep every 10 s until the queue stops. */
export function startUpkeep(queue: Queue, db: Db): void {
  let last = Date.now();
  // poll reports a failed step to the queue's onError and goes on; it ends when the queue stops.
  void poll(queue, 'upkeep', async () => {
    if (Date.now() - last >= upkeepEveryMs) {
      last = Date.now();
      await vacuumJobTables(db);
      await analyzeChangedTables(db, ['public', 'pgboss']);
    }
    return false;
  });
}
