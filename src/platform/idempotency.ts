// Idempotency-Key, as one mechanism for every POST that changes state (IETF draft, Stripe's
// practice). The key is claimed with an INSERT in the same transaction as the work, and the response
// is stored there too, so:
// - a finished request replays (same status and body, Idempotent-Replayed: true), failures included;
// - a concurrent duplicate blocks on the unique index until the first commits, then replays; if the
//   first rolled back (a fault, a crash), the duplicate runs instead. Never a second side effect;
// - a crash can never leave work without its key or a key without its work.
// Business failures (AppError) roll back to a savepoint and are stored as the response.
//
// A stored answer may carry a secret (a new API key, shown once, must be replayed to a retry). So
// the key is stored as its SHA-256 and the answer sealed with AES-256-GCM under a key derived
// (HKDF) from the raw Idempotency-Key: only a request presenting the key reads it back, and the
// database alone (a leaked backup) holds no usable key or answer. That is as strong as the key is
// unguessable: clients should send random keys (a UUID), as the IETF draft recommends.
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError, problem } from '../errors.ts';
import type { Db, Queryable, Tx } from './db.ts';
import { principalOf } from './auth.ts';
import { idempotencyKeyPattern } from './schemas.ts';
import { sendProblem } from './http.ts';

export interface Outcome {
  status: number;
  body: unknown;
}

/**
 * The body as JSON with every object's keys sorted, so a retry whose JSON orders keys differently is
 * the same request. Written with an explicit stack, not recursion: no depth of input can overflow it.
 */
export function canonicalJson(value: unknown): string {
  let out = '';
  // What is still to write, last first: values, and the punctuation between them.
  const steps: ({ text: string } | { value: unknown })[] = [{ value }];
  while (steps.length > 0) {
    const step = steps.pop()!;
    if ('text' in step) {
      out += step.text;
      continue;
    }
    const v = step.value;
    if (Array.isArray(v)) {
      steps.push({ text: ']' });
      for (let i = v.length - 1; i >= 0; i--) steps.push({ value: v[i] }, { text: i > 0 ? ',' : '' });
      steps.push({ text: '[' });
    } else if (v !== null && typeof v === 'object') {
      const keys = Object.keys(v).sort();
      steps.push({ text: '}' });
      for (let i = keys.length - 1; i >= 0; i--)
        steps.push(
          { value: (v as Record<string, unknown>)[keys[i]!] },
          { text: `${i > 0 ? ',' : ''}${JSON.stringify(keys[i])}:` },
        );
      steps.push({ text: '{' });
    } else {
      out += JSON.stringify(v) ?? 'null';
    }
  }
  return out;
}

export function requestHash(method: string, path: string, body: unknown): Buffer {
  return createHash('sha256')
    .update(`${method} ${path}\n${canonicalJson(body ?? null)}`)
    .digest();
}

function keyOf(request: FastifyRequest, required: boolean): string | undefined {
  const raw = request.headers['idempotency-key'];
  if (raw === undefined) {
    if (required) throw new AppError('idempotency_key_required', 'This request needs an Idempotency-Key header');
    return undefined;
  }
  if (typeof raw !== 'string' || !idempotencyKeyPattern.test(raw)) {
    throw new AppError('validation_failed', 'Idempotency-Key must be 1 to 255 printable characters', {
      errors: [{ path: '/headers/idempotency-key', message: 'must be 1 to 255 printable ASCII characters' }],
    });
  }
  return raw;
}

/**
 * Sends an outcome: a problem+json for a status >= 400, and the replay header when it is one.
 * Answers the reply: an async handler must await it, or Fastify, finding the handler done before
 * an async onSend hook has let the answer out, sends a second one.
 */
export function sendOutcome(reply: FastifyReply, outcome: Outcome, replayed: boolean): FastifyReply {
  if (replayed) reply.header('idempotent-replayed', 'true');
  if (outcome.status >= 400) return sendProblem(reply, outcome.body as never);
  return reply.code(outcome.status).send(outcome.body);
}

/** Who asks (whose namespace the key lives in), under which key, for what (the hash of method, path and body). */
export interface KeyedRequest {
  principalId: string;
  key: string;
  hash: Buffer;
}

export interface KeyOptions {
  required: boolean;
  /** Whose keys these are; the principal's by default. An anonymous route must name one. */
  namespace?: string;
  /** What identifies the request instead of the body (signup leaves its password out of a fast hash). */
  hashed?: unknown;
}

/** The request's Idempotency-Key with its namespace and request hash; undefined when it has none (and none is required). */
export function keyedRequestOf(request: FastifyRequest, options: KeyOptions): KeyedRequest | undefined {
  const key = keyOf(request, options.required);
  if (key === undefined) return undefined;
  const path = request.url.split('?')[0] ?? request.url;
  // A route without a body schema takes no body (http.ts refuses one), so {} and none are the same request.
  const body = 'hashed' in options ? options.hashed : request.routeOptions.schema?.body ? request.body : null;
  return {
    principalId: options.namespace ?? principalOf(request).userId,
    key,
    hash: requestHash(request.method, path, body),
  };
}

/** A key in its namespace: enough to find its row and open its answer. */
type Key = Pick<KeyedRequest, 'principalId' | 'key'>;

function keyHash(r: Key): Buffer {
  return createHash('sha256').update(r.key).digest();
}

function sealingKey(r: Key): Buffer {
  return Buffer.from(hkdfSync('sha256', r.key, r.principalId, 'engine-room idempotent response', 32));
}

/** iv (12 bytes), tag (16), ciphertext. */
function seal(r: Key, body: unknown): Buffer {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', sealingKey(r), iv);
  const sealed = Buffer.concat([cipher.update(JSON.stringify(body), 'utf8'), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), sealed]);
}

/** A stored answer: sealed, or in plain text in a row from before answers were sealed (migration 0012). */
function storedBody(key: Key, row: { response_body: string; response_sealed: Buffer | null }): unknown {
  return row.response_sealed ? unseal(key, Buffer.from(row.response_sealed)) : JSON.parse(row.response_body);
}

function unseal(r: Key, sealed: Buffer): unknown {
  const decipher = createDecipheriv('aes-256-gcm', sealingKey(r), sealed.subarray(0, 12));
  decipher.setAuthTag(sealed.subarray(12, 28));
  return JSON.parse(Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]).toString('utf8'));
}

/**
 * Claims the keys in one statement; answers, per request, whether it was claimed (false: the key
 * is taken, see priorOutcomes). A key held by a running transaction makes this wait for it. The
 * requests must name distinct (principal, key) pairs.
 */
export async function claimKeys(tx: Tx, requests: KeyedRequest[]): Promise<boolean[]> {
  const hashes = requests.map(keyHash);
  const claimed = await tx.query<{ principal_id: string; key_hash: Buffer }>(
    `INSERT INTO idempotency_keys (principal_id, key_hash, request_hash)
     SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[])
     ON CONFLICT (principal_id, key_hash) DO NOTHING RETURNING principal_id, key_hash`,
    [requests.map((r) => r.principalId), hashes, requests.map((r) => r.hash)],
  );
  const got = new Set(claimed.map((c) => `${c.principal_id}\0${Buffer.from(c.key_hash).toString('hex')}`));
  return requests.map((r, i) => got.has(`${r.principalId}\0${hashes[i]!.toString('hex')}`));
}

/** For requests whose key was taken: the stored outcome to replay, or the error to answer. */
export async function priorOutcomes(tx: Tx, requests: KeyedRequest[]): Promise<(Outcome | AppError)[]> {
  if (requests.length === 0) return [];
  const hashes = requests.map(keyHash);
  const rows = await tx.query<{
    principal_id: string;
    key_hash: Buffer;
    request_hash: Buffer;
    status_code: number;
    response_body: string;
    response_sealed: Buffer | null;
  }>(
    `SELECT k.principal_id, k.key_hash, k.request_hash, k.status_code, k.response_body, k.response_sealed
       FROM idempotency_keys k JOIN unnest($1::text[], $2::bytea[]) AS r(principal_id, key_hash)
         ON k.principal_id = r.principal_id AND k.key_hash = r.key_hash`,
    [requests.map((r) => r.principalId), hashes],
  );
  const byKey = new Map(rows.map((row) => [`${row.principal_id}\0${Buffer.from(row.key_hash).toString('hex')}`, row]));
  return requests.map((r, i) => {
    const prior = byKey.get(`${r.principalId}\0${hashes[i]!.toString('hex')}`);
    // Gone (purged between the two statements), or claimed with no answer stored yet (status_code
    // keeps its default, 0): the first request is still running.
    if (!prior || prior.status_code === 0)
      return new AppError('idempotency_key_in_use', 'The first request with this key is still running; retry shortly');
    if (!Buffer.from(prior.request_hash).equals(r.hash))
      return new AppError('idempotency_key_reused', 'This Idempotency-Key was used for a different request');
    return { status: prior.status_code, body: storedBody(r, prior) } as Outcome;
  });
}

/**
 * The stored outcomes of these keys (undefined where none is stored), read with the raw keys: for
 * tools that hold them, such as the chaos run, which checks every order against its key's answer.
 */
export async function readOutcomes(db: Queryable, keys: Key[]): Promise<(Outcome | undefined)[]> {
  const hashes = keys.map(keyHash);
  const rows = await db.query<{
    i: number;
    status_code: number;
    response_body: string;
    response_sealed: Buffer | null;
  }>(
    `SELECT r.i::int AS i, k.status_code, k.response_body, k.response_sealed
       FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS r(principal_id, key_hash, i)
       JOIN idempotency_keys k ON k.principal_id = r.principal_id AND k.key_hash = r.key_hash AND k.status_code <> 0`,
    [keys.map((k) => k.principalId), hashes],
  );
  const out: (Outcome | undefined)[] = new Array(keys.length).fill(undefined);
  for (const row of rows) {
    const key = keys[row.i - 1]!;
    out[row.i - 1] = { status: row.status_code, body: storedBody(key, row) };
  }
  return out;
}

/** Stores the outcome of each claimed request, sealed, to be replayed for its key. */
export async function storeOutcomes(tx: Tx, entries: { request: KeyedRequest; outcome: Outcome }[]): Promise<void> {
  if (entries.length === 0) return;
  await tx.query(
    `UPDATE idempotency_keys k SET status_code = o.status_code, response_sealed = o.response_sealed
       FROM unnest($1::text[], $2::bytea[], $3::int[], $4::bytea[]) AS o(principal_id, key_hash, status_code, response_sealed)
      WHERE k.principal_id = o.principal_id AND k.key_hash = o.key_hash`,
    [
      entries.map((e) => e.request.principalId),
      entries.map((e) => keyHash(e.request)),
      entries.map((e) => e.outcome.status),
      entries.map((e) => seal(e.request, e.outcome.body)),
    ],
  );
}

/** The stored outcome of a business failure. */
export function failureOutcome(err: AppError): Outcome {
  const body = problem(err.code, err.message, err.extra.errors);
  return { status: body.status, body };
}

/**
 * Runs work in one transaction under the request's Idempotency-Key (when it has one) and sends
 * the outcome. Work must do all its writes through the tx it is given.
 */
export async function idempotent(
  db: Db,
  request: FastifyRequest,
  reply: FastifyReply,
  options: KeyOptions,
  work: (tx: Tx) => Promise<Outcome>,
): Promise<void> {
  const { outcome, replayed } = await runIdempotent(db, keyedRequestOf(request, options), work);
  await sendOutcome(reply, outcome, replayed);
}

/** Runs work in one transaction under the key (when there is one): its outcome, or the stored one of the first run. */
export async function runIdempotent(
  db: Db,
  keyed: KeyedRequest | undefined,
  work: (tx: Tx) => Promise<Outcome>,
): Promise<{ outcome: Outcome; replayed: boolean }> {
  if (keyed === undefined) return { outcome: await db.transaction(work), replayed: false };
  return db.transaction(async (tx) => {
    const [claimed] = await claimKeys(tx, [keyed]);
    if (!claimed) {
      // Someone finished first (the INSERT waited for them): this is a replay, or a misuse of the key.
      const [prior] = await priorOutcomes(tx, [keyed]);
      if (prior instanceof AppError) throw prior;
      return { outcome: prior!, replayed: true };
    }
    await tx.query('SAVEPOINT idempotent_work');
    let outcome: Outcome;
    try {
      outcome = await work(tx);
    } catch (err) {
      if (!(err instanceof AppError)) throw err; // a fault: roll everything back, store nothing
      await tx.query('ROLLBACK TO SAVEPOINT idempotent_work');
      outcome = failureOutcome(err);
    }
    await storeOutcomes(tx, [{ request: keyed, outcome }]);
    return { outcome, replayed: false };
  });
}

/** Deletes keys older than the retention (at least 24 hours, as the contract promises). */
export async function purgeIdempotencyKeys(db: Db, olderThanHours: number): Promise<number> {
  const rows = await db.query(
    `DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1) RETURNING 1`,
    [Math.max(24, olderThanHours)],
  );
  return rows.length;
}
