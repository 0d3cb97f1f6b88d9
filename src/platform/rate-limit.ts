// Fixed-window counters kept in the database, so a limit holds across every API process (an
// in-memory limiter would give each process its own allowance). @fastify/rate-limit keeps state in
// memory or Redis only, hence this small table-backed version.
import type { Queryable } from './db.js';

export interface WindowState { hits: number; retryAfterSeconds: number }

/** Adds one hit to each bucket in the current window and answers the buckets' new counts. */
export async function addHits(db: Queryable, buckets: string[], windowSeconds: number): Promise<WindowState[]> {
  const rows = await db.query<{ hits: number; retry_after: number }>(
    `INSERT INTO rate_limit_hits (bucket, window_start, hits)
     SELECT b, to_timestamp(floor(extract(epoch FROM now()) / $2) * $2), 1 FROM unnest($1::text[]) AS b
     ON CONFLICT (bucket) DO UPDATE
       SET hits = CASE WHEN rate_limit_hits.window_start = excluded.window_start THEN rate_limit_hits.hits + 1 ELSE 1 END,
           window_start = excluded.window_start
     RETURNING hits, extract(epoch FROM window_start + make_interval(secs => $2) - now())::float8 AS retry_after`,
    [buckets, windowSeconds],
  );
  return rows.map((r) => ({ hits: r.hits, retryAfterSeconds: r.retry_after }));
}

/** The highest count among the buckets in their current window, without adding a hit. */
export async function peekHits(db: Queryable, buckets: string[], windowSeconds: number): Promise<WindowState> {
  const [row] = await db.query<{ hits: number | null; retry_after: number | null }>(
    `SELECT max(hits)::int AS hits, max(extract(epoch FROM window_start + make_interval(secs => $2) - now()))::float8 AS retry_after
       FROM rate_limit_hits
      WHERE bucket = ANY($1::text[]) AND window_start = to_timestamp(floor(extract(epoch FROM now()) / $2) * $2)`,
    [buckets, windowSeconds],
  );
  return { hits: row?.hits ?? 0, retryAfterSeconds: row?.retry_after ?? 0 };
}

export async function clearHits(db: Queryable, buckets: string[]): Promise<void> {
  await db.query('DELETE FROM rate_limit_hits WHERE bucket = ANY($1::text[])', [buckets]);
}
