// Idempotency-Key, as one mechanism for every POST that changes state (IETF draft, Stripe's
// practice). The key is claimed with an INSERT in the same transaction as the work, and the response
// is stored there too, so:
// - a finished request replays (same status and body, Idempotent-Replayed: true), failures included;
// - a concurrent duplicate blocks on the unique index until the first commits, then replays; if the
//   first rolled back (a fault, a crash), the duplicate runs instead. Never a second side effect;
// - a crash can never leave work without its key or a key without its work.
// Business failures (AppError) roll back to a savepoint and are stored as the response.
import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError, problem } from '../errors.js';
import type { Db, Tx } from './db.js';
import { principalOf } from './auth.js';
import { idempotencyKeyPattern } from './schemas.js';
import { sendProblem } from './http.js';

export interface Outcome {
  status: number;
  body: unknown;
  /**
   * Work that must come last before the commit because it takes a contended row lock (a hot SKU's
   * stock): it runs after the outcome is stored, so the lock is held for one statement and the
   * commit, not also for the response's UPDATE. An AppError from it undoes the work and stores
   * the error instead, like one from the work itself.
   */
  lastStep?: () => Promise<void>;
}

/** Objects with their keys sorted, so a retry whose JSON orders keys differently is the same request. */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical((value as Record<string, unknown>)[k])]));
  }
  return value;
}

export function requestHash(method: string, path: string, body: unknown): Buffer {
  return createHash('sha256').update(`${method} ${path}\n${JSON.stringify(canonical(body ?? null))}`).digest();
}

function keyOf(request: FastifyRequest, required: boolean): string | undefined {
  const raw = request.headers['idempotency-key'];
  if (raw === undefined) {
    if (required) throw new AppError('idempotency_key_required', 'This request needs an Idempotency-Key header');
    return undefined;
  }
  if (typeof raw !== 'string' || !idempotencyKeyPattern.test(raw)) {
    throw new AppError('validation_failed', 'Idempotency-Key must be 1 to 255 printable characters', { errors: [{ path: '/headers/idempotency-key', message: 'must be 1 to 255 printable ASCII characters' }] });
  }
  return raw;
}

function send(reply: FastifyReply, outcome: Outcome): void {
  if (outcome.status >= 400) sendProblem(reply, outcome.body as never);
  else reply.code(outcome.status).send(outcome.body);
}

/**
 * Runs work in one transaction under the request's Idempotency-Key (when it has one) and sends
 * the outcome. Work must do all its writes through the tx it is given.
 */
export async function idempotent(
  db: Db,
  request: FastifyRequest,
  reply: FastifyReply,
  options: { required: boolean },
  work: (tx: Tx) => Promise<Outcome>,
): Promise<void> {
  const key = keyOf(request, options.required);
  if (key === undefined) {
    return send(reply, await db.transaction(async (tx) => {
      const outcome = await work(tx);
      await outcome.lastStep?.();
      return outcome;
    }));
  }
  const principal = principalOf(request);
  const path = request.url.split('?')[0] ?? request.url;
  const hash = requestHash(request.method, path, request.body);

  const { outcome, replayed } = await db.transaction(async (tx) => {
    const claimed = await tx.query(
      `INSERT INTO idempotency_keys (principal_id, key, request_hash) VALUES ($1, $2, $3)
       ON CONFLICT (principal_id, key) DO NOTHING RETURNING 1`,
      [principal.userId, key, hash],
    );
    if (claimed.length === 0) {
      // Someone finished first (the INSERT waited for them): this is a replay, or a misuse of the key.
      const [prior] = await tx.query<{ request_hash: Buffer; status_code: number; response_body: string }>(
        'SELECT request_hash, status_code, response_body FROM idempotency_keys WHERE principal_id = $1 AND key = $2',
        [principal.userId, key],
      );
      if (!prior) throw new AppError('idempotency_key_in_use', 'The first request with this key is still running; retry shortly');
      if (!Buffer.from(prior.request_hash).equals(hash)) {
        throw new AppError('idempotency_key_reused', 'This Idempotency-Key was used for a different request');
      }
      return { outcome: { status: prior.status_code, body: JSON.parse(prior.response_body) } as Outcome, replayed: true };
    }
    await tx.query('SAVEPOINT idempotent_work');
    const store = (o: Outcome) => tx.query(
      'UPDATE idempotency_keys SET status_code = $3, response_body = $4 WHERE principal_id = $1 AND key = $2',
      [principal.userId, key, o.status, JSON.stringify(o.body)],
    );
    const failed = async (err: unknown): Promise<Outcome> => {
      if (!(err instanceof AppError)) throw err; // a fault: roll everything back, store nothing
      // Undoes the work, and the stored success if lastStep failed after it was written.
      await tx.query('ROLLBACK TO SAVEPOINT idempotent_work');
      const body = problem(err.code, err.message, err.extra.errors);
      const outcome = { status: body.status, body };
      await store(outcome);
      return outcome;
    };
    let outcome: Outcome;
    try {
      outcome = await work(tx);
    } catch (err) {
      return { outcome: await failed(err), replayed: false };
    }
    await store(outcome);
    if (outcome.lastStep) {
      try {
        await outcome.lastStep();
      } catch (err) {
        return { outcome: await failed(err), replayed: false };
      }
    }
    return { outcome, replayed: false };
  });
  if (replayed) reply.header('idempotent-replayed', 'true');
  return send(reply, outcome);
}

/** Deletes keys older than the retention (at least 24 hours, as the contract promises). */
export async function purgeIdempotencyKeys(db: Db, olderThanHours: number): Promise<number> {
  const rows = await db.query(`DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1) RETURNING 1`, [Math.max(24, olderThanHours)]);
  return rows.length;
}
