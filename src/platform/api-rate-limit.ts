// API-wide rate limits: every request counts against its route's class (read, write or auth) for
// its caller (an API key, a user, or an anonymous client address), in fixed windows shared by every
// process through the rate_limit_hits table.
//
// A statement per request (as the login throttle in rate-limit.ts does) would put a round trip to
// the database in front of every request; on this machine that is about the cost of a whole order.
// So each process counts in memory and adds its counts to the shared ones in one batched statement
// (every syncMs, or at once when a caller's unconfirmed count reaches its share of the limit); the
// statement answers the shared totals, which the process then decides on. A process admits a
// request while (the last shared total it heard) + (its own counts not yet in that total) < max,
// and never holds more than `share` = ceil(max × localSharePercent / 100) unconfirmed admissions of
// one caller: the next request waits for the flush in flight. Hence:
// - never fewer than max admitted per window (what a process knows is at most what was admitted);
// - at most max - 1 + N × share admitted per window with N processes (past the flush that takes the
//   shared total to max, each process has at most its share unconfirmed; one process is exact).
// Small limits (share 1) count every admission in the database before the next one, as the login
// throttle does; large ones cost a Map update per request. Windows are aligned to the epoch by each
// process's clock (servers keep NTP time; a late clock's counts for a closed window are dropped).
// While the database cannot be written, each process goes on limiting on its own counts.
//
// Why not @fastify/rate-limit or rate-limiter-flexible: their stores count with a round trip per
// request (rate-limiter-flexible's RateLimiterPostgres is one upsert per request; @fastify/rate-limit
// has memory and Redis stores, and a custom one still gets one incr per request), which is the very
// cost this design removes, and both write the older draft's RateLimit-Limit/-Remaining/-Reset
// headers rather than the current `RateLimit` and `RateLimit-Policy` fields.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Counter } from 'prom-client';
import type { Queryable } from './db.ts';
import type { RateLimitSettings } from '../config.ts';
import { clientKey } from './rate-limit.ts';
import { AppError } from '../errors.ts';
import type { CredentialGuard } from './auth.ts';

export type RateLimitClass = 'read' | 'write' | 'auth';

declare module 'fastify' {
  /** rateLimit: the route's class, derived from its method unless set; false for probes and metrics, never limited nor shed. */
  interface FastifyContextConfig {
    rateLimit?: RateLimitClass | false;
  }
}

export interface Decision {
  admitted: boolean;
  remaining: number;
  resetSeconds: number;
}

interface Entry {
  window: number;
  max: number;
  /** The shared total of this window as the database last answered it (this process's flushed counts included). */
  known: number;
  /** Admitted here, not yet sent; sent in the flush in flight. */
  pending: number;
  inFlight: number;
  /** Resolves when the flush in flight has answered (waiters then decide again). */
  flushed: Promise<void> | undefined;
}

export interface SharedLimiter {
  /** Counts one request of the bucket, or refuses it; may wait for a flush when the caller used up its unconfirmed share. */
  take(bucket: string, max: number): Decision | Promise<Decision>;
  /** What take would decide now on what this process knows, without counting anything. */
  peek(bucket: string, max: number): Decision;
  /** Sends every local count now (tests, shutdown). */
  flush(): Promise<void>;
  stop(): Promise<void>;
}

export function createSharedLimiter(
  db: Queryable,
  settings: Pick<RateLimitSettings, 'windowSeconds' | 'syncMs' | 'localSharePercent'>,
  onError: (err: unknown) => void = () => {},
): SharedLimiter {
  const windowMs = settings.windowSeconds * 1000;
  const entries = new Map<string, Entry>();
  let flushing: Promise<void> | undefined;
  let again = false;
  let stopped = false;

  const shareOf = (max: number) => Math.max(1, Math.ceil((max * settings.localSharePercent) / 100));

  async function send(): Promise<void> {
    const now = Math.floor(Date.now() / windowMs);
    const batch: [string, Entry][] = [];
    for (const [bucket, entry] of entries) {
      if (entry.window < now && entry.pending === 0 && entry.inFlight === 0)
        entries.delete(bucket); // a closed window
      else if (entry.pending > 0) {
        if (entry.window < now) {
          entry.pending = 0;
          continue;
        } // counts of a closed window matter no more
        entry.inFlight = entry.pending;
        entry.pending = 0;
        batch.push([bucket, entry]);
      }
    }
    if (batch.length === 0) return;
    let settle!: () => void;
    const done = new Promise<void>((resolve) => {
      settle = resolve;
    });
    for (const [, entry] of batch) entry.flushed = done;
    try {
      // Rows locked in bucket order, so that two processes' flushes never wait on each other in a cycle.
      const rows = await db.query<{ bucket: string; window_start: number; hits: number }>(
        `INSERT INTO rate_limit_hits AS r (bucket, window_start, hits)
         SELECT b, to_timestamp(w), n FROM unnest($1::text[], $2::int8[], $3::int4[]) AS t(b, w, n) ORDER BY b
         ON CONFLICT (bucket) DO UPDATE
           SET hits = CASE WHEN r.window_start = excluded.window_start THEN r.hits + excluded.hits
                           WHEN r.window_start < excluded.window_start THEN excluded.hits
                           ELSE r.hits END,
               window_start = greatest(r.window_start, excluded.window_start)
         RETURNING bucket, extract(epoch FROM window_start)::float8 AS window_start, hits`,
        [
          batch.map(([b]) => b),
          batch.map(([, e]) => e.window * settings.windowSeconds),
          batch.map(([, e]) => e.inFlight),
        ],
      );
      const answered = new Map(rows.map((row) => [row.bucket, row]));
      for (const [bucket, entry] of batch) {
        const row = answered.get(bucket);
        // The row may be in a later window (another process's clock is ahead): then ours is over.
        entry.known =
          row && row.window_start === entry.window * settings.windowSeconds ? row.hits : entry.known + entry.inFlight;
        entry.inFlight = 0;
      }
    } catch (err) {
      // The counts stay local: this process goes on limiting on what it counted itself.
      for (const [, entry] of batch) {
        entry.known += entry.inFlight;
        entry.inFlight = 0;
      }
      onError(err);
    } finally {
      for (const [, entry] of batch) if (entry.flushed === done) entry.flushed = undefined;
      settle();
    }
  }

  function flush(): Promise<void> {
    if (flushing) {
      again = true;
      return flushing;
    }
    flushing = send().finally(() => {
      flushing = undefined;
      if (again && !stopped) {
        again = false;
        void flush();
      }
    });
    return flushing;
  }

  const timer = setInterval(() => {
    void flush();
  }, settings.syncMs);
  timer.unref();

  function take(bucket: string, max: number): Decision | Promise<Decision> {
    const nowMs = Date.now();
    const window = Math.floor(nowMs / windowMs);
    let entry = entries.get(bucket);
    if (!entry || entry.window !== window) {
      // A new window: the old one's unsent counts are dropped with it (also from a flush in flight).
      entry = { window, max, known: 0, pending: 0, inFlight: 0, flushed: undefined };
      entries.set(bucket, entry);
    }
    const resetSeconds = Math.max(1, Math.ceil(((window + 1) * windowMs - nowMs) / 1000));
    const used = entry.known + entry.pending + entry.inFlight;
    if (used >= max) return { admitted: false, remaining: 0, resetSeconds };
    if (entry.pending + entry.inFlight >= shareOf(max)) {
      // This process used its share without hearing the shared total: hear it before deciding.
      const wait = entry.flushed ?? flush();
      return wait.then(() => take(bucket, max));
    }
    entry.pending++;
    if (entry.pending >= shareOf(max)) void flush();
    return { admitted: true, remaining: Math.max(0, max - used - 1), resetSeconds };
  }

  function peek(bucket: string, max: number): Decision {
    const nowMs = Date.now();
    const window = Math.floor(nowMs / windowMs);
    const entry = entries.get(bucket);
    const used = entry && entry.window === window ? entry.known + entry.pending + entry.inFlight : 0;
    const resetSeconds = Math.max(1, Math.ceil(((window + 1) * windowMs - nowMs) / 1000));
    return { admitted: used < max, remaining: Math.max(0, max - used), resetSeconds };
  }

  return {
    take,
    peek,
    flush: async () => {
      await flush();
      if (flushing) await flushing;
    },
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await flush();
    },
  };
}

/** The class of a route: its declaration's, or read for GET and HEAD and write for the rest. */
function classOf(request: FastifyRequest): RateLimitClass | false {
  const declared = request.routeOptions.config?.rateLimit;
  if (declared !== undefined) return declared;
  return request.method === 'GET' || request.method === 'HEAD' ? 'read' : 'write';
}

/** Whose allowance a request uses: auth routes always the client address's (guessing is what they limit). */
function callerOf(request: FastifyRequest, limitClass: RateLimitClass): string {
  const principal = request.principal;
  if (limitClass === 'auth' || !principal) return `client:${clientKey(request.ip)}`;
  return principal.via === 'api_key' ? `key:${principal.credentialId}` : `user:${principal.userId}`;
}

function setHeaders(
  reply: FastifyReply,
  limitClass: RateLimitClass,
  max: number,
  windowSeconds: number,
  decision: Decision,
): void {
  // draft-ietf-httpapi-ratelimit-headers: the policy (quota q per window w) and what is left of it (r, reset in t seconds).
  reply.header('ratelimit-policy', `"${limitClass}";q=${max};w=${windowSeconds}`);
  reply.header('ratelimit', `"${limitClass}";r=${decision.remaining};t=${decision.resetSeconds}`);
}

export interface ApiRateLimits {
  /** The onRequest hook that counts every request against its caller: add it after authentication's. */
  countCaller: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
  /** For registerAuth: what authentication refuses (401, 403) is counted against the client address. */
  credentialGuard: CredentialGuard;
}

/**
 * Limits every route but those declared rateLimit: false, after authentication (to key by caller)
 * and before the body is read: add countCaller after registerAuth's hook, and give registerAuth the
 * credentialGuard. Undefined when the limits are off.
 *
 * A request that authentication refuses never reaches countCaller, so the guard counts it: against
 * its client address, in an allowance of its own per class (the same max), so that anonymous
 * browsing from a shared address does not lock its signed-in users out, nor the reverse. Once an
 * address is over it, its tokens are refused 429 before they are looked up: a flood of made-up
 * tokens costs at most max lookups per window.
 */
export function createApiRateLimits(
  app: FastifyInstance,
  deps: { db: Queryable; settings: RateLimitSettings; refused?: Counter<'policy'> },
): ApiRateLimits | undefined {
  const { settings } = deps;
  if (!settings.enabled) return undefined;
  const limiter = createSharedLimiter(deps.db, settings, (err) =>
    app.log.warn({ err }, "could not share the rate-limit counts; limiting on this process's own"),
  );
  const maxOf: Record<RateLimitClass, number> = {
    read: settings.readMax,
    write: settings.writeMax,
    auth: settings.authMax,
  };
  app.addHook('onClose', () => limiter.stop());

  const refuse = (limitClass: RateLimitClass, max: number, decision: Decision, what: string): never => {
    deps.refused?.inc({ policy: limitClass });
    throw new AppError('rate_limited', `At most ${max} ${what} per ${settings.windowSeconds} s; try again later`, {
      retryAfterSeconds: decision.resetSeconds,
    });
  };
  const whatOf = (limitClass: RateLimitClass) =>
    (limitClass === 'auth' ? 'sign-up, login and password-reset' : limitClass) + ' requests';
  const refusedBucket = (request: FastifyRequest, limitClass: RateLimitClass) =>
    `api:${limitClass}:refused:${clientKey(request.ip)}`;

  return {
    async countCaller(request, reply) {
      const limitClass = classOf(request);
      if (limitClass === false) return;
      const max = maxOf[limitClass];
      const taken = limiter.take(`api:${limitClass}:${callerOf(request, limitClass)}`, max);
      const decision = taken instanceof Promise ? await taken : taken;
      setHeaders(reply, limitClass, max, settings.windowSeconds, decision);
      if (!decision.admitted) refuse(limitClass, max, decision, whatOf(limitClass));
    },
    credentialGuard: {
      beforeLookup(request, reply) {
        const limitClass = classOf(request);
        if (limitClass === false) return;
        const max = maxOf[limitClass];
        const decision = limiter.peek(refusedBucket(request, limitClass), max);
        if (decision.admitted) return;
        setHeaders(reply, limitClass, max, settings.windowSeconds, decision);
        refuse(limitClass, max, decision, `${whatOf(limitClass)} refused for their credentials`);
      },
      async refused(request, reply) {
        const limitClass = classOf(request);
        if (limitClass === false) return;
        const max = maxOf[limitClass];
        const taken = limiter.take(refusedBucket(request, limitClass), max);
        const decision = taken instanceof Promise ? await taken : taken;
        setHeaders(reply, limitClass, max, settings.windowSeconds, decision);
        if (!decision.admitted)
          refuse(limitClass, max, decision, `${whatOf(limitClass)} refused for their credentials`);
      },
    },
  };
}
