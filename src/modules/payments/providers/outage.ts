// An outage of the sandbox processor, for drills: an admin sets a window (PUT /v1/sandbox/outage),
// and until it ends the sandbox answers every charge request "processor unavailable" (retryable)
// without touching its books, as a real processor that is down. The window is a row, so every
// worker process sees it.
import type { Queryable } from '../../../platform/db.ts';

export async function outageUntil(db: Queryable): Promise<Date | null> {
  const [row] = await db.query<{ until: Date }>('SELECT until FROM sandbox_outage WHERE until > now()');
  return row?.until ?? null;
}

export async function startOutage(db: Queryable, seconds: number, startedBy: string): Promise<Date> {
  const [row] = await db.query<{ until: Date }>(
    `INSERT INTO sandbox_outage (until, started_by) VALUES (now() + make_interval(secs => $1), $2)
     ON CONFLICT (singleton) DO UPDATE SET until = excluded.until, started_by = excluded.started_by, started_at = now()
     RETURNING until`,
    [seconds, startedBy],
  );
  return row!.until;
}

export async function endOutage(db: Queryable): Promise<void> {
  await db.query('DELETE FROM sandbox_outage');
}

/**
 * Whether the sandbox is down now. The charges of one batch ask at the same moment and share one
 * read, so the sandbox pays one query per batch (and a real processor's adapter none at all).
 */
export function outageCheck(db: Queryable): () => Promise<boolean> {
  let reading: Promise<Date | null> | undefined;
  return async () => {
    reading ??= outageUntil(db).finally(() => {
      reading = undefined;
    });
    const until = await reading;
    return until !== null && until.getTime() > Date.now();
  };
}

export function outageView(until: Date | null) {
  return {
    active: until !== null && until.getTime() > Date.now(),
    until: until && until.getTime() > Date.now() ? until.toISOString() : null,
  };
}
