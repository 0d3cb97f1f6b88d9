// Fixed-window counters kept in the database, so a limit holds across every API process (an
// in-memory limiter would give each process its own allowance). @fastify/rate-limit keeps state in
// memory or Redis only, hence this small table-backed version.
//
// A limit is enforced by counting first and deciding on the count the database answers: one
// INSERT ... ON CONFLICT DO UPDATE ... RETURNING per attempt, atomic on both engines and across
// processes. Reading the counter, doing the work and counting afterwards would let every request
// of a parallel burst read the same count and pass (500 parallel login guesses all reached the
// password check that way).
//
// An attempt that counts against several limits (a login: account and client, account, client)
// adds to all its counters in one statement, which locks their rows in bucket order and holds them
// to its end: attempts that share counters are counted in the same order in each, so a burst is
// decided consistently (exactly the first `max` get through, none refused by one counter while
// another let it in), and no two statements lock rows in opposite orders. Taking hits back touches
// one row per statement, so it never waits while holding a lock.
import { isIPv4, isIPv6 } from 'node:net';
import type { Queryable } from './db.ts';
import { AppError } from '../errors.ts';

/**
 * The key a client address is counted under. An IPv6 client usually holds a whole /64 (it picks
 * any address in it at will), so it is counted by that /64, or one host could make its own fresh
 * client for every attempt; an IPv4 address mapped into IPv6 is counted as the IPv4 address.
 */
export function clientKey(address: string): string {
  const bare = address.replace(/%.*$/, '').toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(bare);
  if (mapped && isIPv4(mapped[1]!)) return mapped[1]!;
  if (!isIPv6(bare)) return bare;
  // The first four groups: expand "::" enough to know them (a trailing dotted IPv4 is two groups).
  const [head = '', tail] = bare.split('::');
  const groups = (part: string) =>
    (part === '' ? [] : part.split(':')).flatMap((g) => (g.includes('.') ? ['0', '0'] : [g]));
  const left = groups(head);
  const full =
    tail === undefined
      ? left
      : [...left, ...Array<string>(8 - left.length - groups(tail).length).fill('0'), ...groups(tail)];
  return `${full
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

export interface WindowState {
  hits: number;
  retryAfterSeconds: number;
}

/** Adds one hit to the bucket's current window and answers its new count. */
export async function addHit(db: Queryable, bucket: string, windowSeconds: number): Promise<WindowState> {
  return (await addHits(db, [bucket], windowSeconds)).get(bucket)!;
}

/** Adds one hit to each bucket's current window, in one statement (rows locked in bucket order); answers the new counts. */
export async function addHits(
  db: Queryable,
  buckets: string[],
  windowSeconds: number,
): Promise<Map<string, WindowState>> {
  const rows = await db.query<{ bucket: string; hits: number; retry_after: number }>(
    `INSERT INTO rate_limit_hits (bucket, window_start, hits)
     SELECT b, to_timestamp(floor(extract(epoch FROM now()) / $2) * $2), 1 FROM unnest($1::text[]) AS b ORDER BY b
     ON CONFLICT (bucket) DO UPDATE
       SET hits = CASE WHEN rate_limit_hits.window_start = excluded.window_start THEN rate_limit_hits.hits + 1 ELSE 1 END,
           window_start = excluded.window_start
     RETURNING bucket, hits, extract(epoch FROM window_start + make_interval(secs => $2) - now())::float8 AS retry_after`,
    [buckets, windowSeconds],
  );
  return new Map(rows.map((row) => [row.bucket, { hits: row.hits, retryAfterSeconds: row.retry_after }]));
}

/** Takes back one hit of the bucket's current window (an attempt that turned out not to count). */
export async function removeHit(db: Queryable, bucket: string, windowSeconds: number): Promise<void> {
  // A counter is never zero (a CHECK): its last hit goes with the row.
  await db.query(
    `WITH w AS (SELECT to_timestamp(floor(extract(epoch FROM now()) / $2) * $2) AS start),
     gone AS (DELETE FROM rate_limit_hits r USING w WHERE r.bucket = $1 AND r.window_start = w.start AND r.hits <= 1)
     UPDATE rate_limit_hits r SET hits = r.hits - 1 FROM w WHERE r.bucket = $1 AND r.window_start = w.start AND r.hits > 1`,
    [bucket, windowSeconds],
  );
}

export async function clearHits(db: Queryable, buckets: string[]): Promise<void> {
  await db.query('DELETE FROM rate_limit_hits WHERE bucket = ANY($1::text[])', [buckets]);
}

export interface Limit {
  bucket: string;
  max: number;
}

/**
 * Counts one attempt against every limit, and when any is over, takes the hits back and throws 429
 * rate_limited with the Retry-After of the window. A refused attempt takes back only its own hits, so
 * however a parallel burst interleaves, no more than max attempts per bucket get through.
 */
export async function takeAttempt(
  db: Queryable,
  limits: Limit[],
  windowSeconds: number,
  detail: string,
): Promise<void> {
  const states = await addHits(
    db,
    limits.map((l) => l.bucket),
    windowSeconds,
  );
  const over = limits.map((l) => states.get(l.bucket)!).filter((state, i) => state.hits > limits[i]!.max);
  if (over.length === 0) return;
  await Promise.all(limits.map((l) => removeHit(db, l.bucket, windowSeconds)));
  // Every limit of one attempt counts in the same window, so any of them says when it ends.
  throw new AppError('rate_limited', detail, { retryAfterSeconds: over[0]!.retryAfterSeconds });
}
