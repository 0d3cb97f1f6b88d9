// The retention job: every rule of rules.ts, batch after batch, each batch its own statement (and
// so its own short transaction), until a rule finds fewer rows than a batch, the time budget is
// spent, or the job is stopped. A run that stops early leaves the rest to the next one: nothing is
// lost by stopping between batches. Safe from several processes at once (rules.ts).
import type { Queryable } from '../../platform/db.ts';
import { retentionRules, type RetentionRule, type RetentionSettings } from './rules.ts';

export interface RetentionOptions {
  /** Rows per statement. */
  batchSize: number;
  /** Stop starting batches after this long (the next run goes on). */
  budgetMs?: number;
  /** Stop starting batches once this aborts (the queue stops). */
  signal?: AbortSignal;
  /** Called between two batches, when no transaction of the prune is open (tests use it). */
  between?: () => Promise<void>;
  rules?: readonly RetentionRule[];
}

/** Runs every rule; answers the rows removed per table (tables with none left out). */
export async function pruneOldRows(
  db: Queryable,
  settings: Readonly<RetentionSettings>,
  options: RetentionOptions,
): Promise<Record<string, number>> {
  const deadline = Date.now() + (options.budgetMs ?? 4 * 60_000);
  const removed: Record<string, number> = {};
  const goOn = () => !options.signal?.aborted && Date.now() < deadline;
  for (const rule of options.rules ?? retentionRules) {
    while (goOn()) {
      const n = await rule.prune(db, options.batchSize, settings);
      if (n > 0) removed[rule.table] = (removed[rule.table] ?? 0) + n;
      if (n < options.batchSize) break;
      await options.between?.();
    }
  }
  return removed;
}
