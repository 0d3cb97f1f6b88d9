// Accounts: signup, login with throttling, sessions, API keys, roles, and the first admin.
import { createHash, randomBytes } from 'node:crypto';
import type { Db, Queryable, Tx } from '../../platform/db.ts';
import { coalesce } from '../../platform/coalesce.ts';
import type { Principal, Role } from '../../platform/auth.ts';
import { newId } from '../../platform/ids.ts';
import { AppError } from '../../errors.ts';
import { clearHits, clientKey, removeHit, takeAttempt } from '../../platform/rate-limit.ts';
import { decoyHash, hashPassword, isCommonPassword, verifyPassword } from './passwords.ts';
import * as repo from './repo.ts';
import type { User } from './schemas.ts';
import { runIdempotent, type KeyedRequest, type Outcome } from '../../platform/idempotency.ts';

export interface AccountsConfig {
  sessionTtlSeconds: number;
  loginMaxFailuresPerAccountAndClient: number;
  loginMaxFailuresPerAccount: number;
  loginMaxFailuresPerClient: number;
  loginWindowSeconds: number;
  signupMaxPerClient: number;
  signupWindowSeconds: number;
}

// Prefixes tell the two kinds of secret apart at a glance (and let secret scanners find leaks).
const sessionPrefix = 'ers_';
const apiKeyPrefix = 'erk_';

function newSecret(prefix: string): string {
  return prefix + randomBytes(32).toString('base64url');
}

export function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

export function userView(row: repo.UserRow): User {
  return { id: row.id, email: row.email, name: row.name, role: row.role, createdAt: row.created_at.toISOString() };
}

function isUniqueViolation(err: unknown, constraint: string): boolean {
  const e = err as { code?: string; constraint?: string };
  return e?.code === '23505' && e.constraint === constraint;
}

async function startSession(db: Queryable, userId: string, ttlSeconds: number) {
  const token = newSecret(sessionPrefix);
  const expiresAt = await repo.insertSession(db, { id: newId('ses'), userId, tokenHash: hashSecret(token), ttlSeconds });
  return { token, expiresAt: expiresAt.toISOString() };
}

/** Whose Idempotency-Keys a signup's are: it has no principal, so the account it is for (one client cannot replay another's). */
export function signupNamespace(email: string): string {
  return `signup:${email.trim().toLowerCase()}`;
}

/**
 * Creates a customer and a session. Under an Idempotency-Key (see signupNamespace), a retry of a
 * signup that succeeded gets the same account with a new session: tokens are never stored, not even
 * sealed, so the retry proves the password again, as a login does (and is throttled as one); the
 * password is also left out of the request hash, which is a fast hash.
 */
export async function signup(db: Db, config: AccountsConfig, input: { email: string; password: string; name: string }, clientAddress: string, keyed?: KeyedRequest): Promise<{ outcome: Outcome; replayed: boolean }> {
  if (isCommonPassword(input.password)) {
    throw new AppError('validation_failed', 'The password is too common', { errors: [{ path: '/password', message: 'is one of the most common passwords' }] });
  }
  // Every signup from one address counts, before the Argon2 work: taken emails cannot be probed
  // at will (the contract wants 409 email_taken), and nor can accounts be mass-created.
  const perClient = { bucket: `signup:client:${clientKey(clientAddress)}`, max: config.signupMaxPerClient };
  await takeAttempt(db, [perClient], config.signupWindowSeconds, 'Too many signups from this address; try again later');
  const passwordHash = await hashPassword(input.password);
  let session: { token: string; expiresAt: string } | undefined;
  const { outcome, replayed } = await runIdempotent(db, keyed, async (tx) => {
    let user: repo.UserRow;
    try {
      user = await repo.insertUser(tx, { id: newId('usr'), email: input.email.trim(), name: input.name.trim(), role: 'customer', passwordHash });
    } catch (err) {
      if (isUniqueViolation(err, 'users_email_unique')) throw new AppError('email_taken', 'An account with this email exists');
      throw err;
    }
    session = await startSession(tx, user.id, config.sessionTtlSeconds);
    return { status: 201, body: { user: userView(user) } };
  });
  if (outcome.status !== 201) return { outcome, replayed };
  if (!replayed) return { outcome: { status: 201, body: { ...(outcome.body as { user: User }), ...session! } }, replayed };
  try {
    return { outcome: { status: 201, body: await login(db, config, input, clientAddress) }, replayed };
  } catch (err) {
    if (err instanceof AppError && err.code === 'invalid_credentials') throw new AppError('idempotency_key_reused', 'This Idempotency-Key was used for a different request');
    throw err;
  }
}

/**
 * Signs in. Failures are throttled three ways, each counted before any password work (takeAttempt):
 * - per account and client address, tightly: a guesser at one address is stopped after a few
 *   tries, and that alone does not lock the owner out, who logs in from elsewhere;
 * - per account, from anywhere, with a much higher ceiling: a guesser spread over many addresses
 *   is still capped, at the price of locking the owner out too once it is reached;
 * - per client address, over all accounts: one address spraying many accounts.
 * A successful login takes its own hits back and forgives that client's failures for the account;
 * it does not reset the account's ceiling, or the owner logging in would refill a distributed
 * guesser's allowance.
 */
export async function login(db: Db, config: AccountsConfig, input: { email: string; password: string }, clientAddress: string) {
  const email = input.email.trim().toLowerCase();
  const client = clientKey(clientAddress);
  const window = config.loginWindowSeconds;
  // The client key comes first and has no space in it, so no email can make its pair collide with another's.
  const pair = { bucket: `login:pair:${client} ${email}`, max: config.loginMaxFailuresPerAccountAndClient };
  const account = { bucket: `login:account:${email}`, max: config.loginMaxFailuresPerAccount };
  const perClient = { bucket: `login:client:${client}`, max: config.loginMaxFailuresPerClient };
  await takeAttempt(db, [pair, account, perClient], window, 'Too many failed logins; try again later');
  const user = await repo.findUserByEmail(db, email);
  // An unknown email is checked against a decoy hash, so it costs the same time as a wrong password.
  const ok = await verifyPassword(user?.password_hash ?? await decoyHash(), input.password);
  if (!user || !ok) throw new AppError('invalid_credentials', 'The email or password is wrong');
  await Promise.all([clearHits(db, [pair.bucket]), removeHit(db, account.bucket, window), removeHit(db, perClient.bucket, window)]);
  return { user: userView(user), ...(await startSession(db, user.id, config.sessionTtlSeconds)) };
}

export async function logout(db: Db, principal: Principal): Promise<void> {
  if (principal.via !== 'session') throw new AppError('bad_request', 'API keys are revoked with DELETE /v1/api-keys/{id}, not logged out');
  await repo.revokeSession(db, principal.credentialId);
}

/**
 * The principal behind a bearer token, or null. Session lookups that arrive while others run go
 * together, as one query (every request starts with one, so under load this saves a round trip per request). A
 * lookup always starts after its request arrived, so a logout committed before is always seen.
 */
export function tokenResolver(db: Db): (token: string) => Promise<Principal | null> {
  const sessions = coalesce<string, Principal>(
    async (hexHashes) => repo.principalsBySessionHashes(db, hexHashes.map((h) => Buffer.from(h, 'hex'))),
    { concurrency: db.engine === 'pglite' ? 1 : 2, maxBatch: 200 },
  );
  return async (token) => {
    if (token.startsWith(sessionPrefix)) return (await sessions(hashSecret(token).toString('hex'))) ?? null;
    if (token.startsWith(apiKeyPrefix)) return repo.principalByApiKeyHash(db, hashSecret(token));
    return null;
  };
}

export async function me(db: Db, principal: Principal) {
  if (principal.via === 'api_key') {
    const key = await repo.findApiKey(db, principal.credentialId);
    if (!key) throw new AppError('unauthenticated');
    return { id: key.id, email: null, name: key.name, role: key.role, createdAt: key.created_at.toISOString() };
  }
  const user = await repo.findUserById(db, principal.userId);
  if (!user) throw new AppError('unauthenticated');
  return userView(user);
}

/**
 * Creates an API key. Its createdBy is the user accountable for it: the admin who made it, or for a
 * key made with an API key, that key's own createdBy, so that demoting the admin revokes every key
 * that descends from their authority (changeRole). That user's row is locked (FOR SHARE) and their
 * role checked again: a demotion that commits first makes this fail, and one that comes later waits
 * for this key and then revokes it.
 */
export async function createApiKey(tx: Tx, principal: Principal, input: { name: string; role: Role }) {
  const accountable = principal.via === 'session' ? principal.userId : (await repo.findApiKey(tx, principal.credentialId))?.created_by ?? null;
  if (accountable !== null && (await repo.lockRole(tx, accountable)) !== 'admin') throw new AppError('forbidden', 'Your role may not do this');
  const key = newSecret(apiKeyPrefix);
  const row = await repo.insertApiKey(tx, { id: newId('key'), name: input.name, role: input.role, keyHash: hashSecret(key), createdBy: accountable });
  return { id: row.id, name: row.name, role: row.role, key, createdAt: row.created_at.toISOString() };
}

export function apiKeyView(row: repo.ApiKeyRow) {
  return { id: row.id, name: row.name, role: row.role, createdBy: row.created_by, createdAt: row.created_at.toISOString(), revokedAt: row.revoked_at?.toISOString() ?? null };
}

export async function revokeApiKey(db: Db, id: string): Promise<void> {
  if (!(await repo.revokeApiKey(db, id))) throw new AppError('not_found', 'No such API key');
}

/**
 * Changes a user's role. Lowering it revokes, in the same transaction, the API keys they are
 * accountable for whose role is now above theirs: a key is only as good as the authority that made
 * it (capping them instead would leave keys that act with a role their maker never chose for them).
 * The last admin cannot be demoted, or no one could manage roles and keys any more: the admins' rows
 * are locked first, so two admins demoting each other at once take turns and the second is refused.
 */
export async function changeRole(db: Db, id: string, role: Role): Promise<User> {
  return db.transaction(async (tx) => {
    if (role !== 'admin') {
      const admins = await repo.lockAdmins(tx);
      if (admins.length === 1 && admins[0] === id) throw new AppError('invalid_state', 'This is the only admin: make another user admin first');
    }
    const row = await repo.setUserRole(tx, id, role);
    if (!row) throw new AppError('not_found', 'No such user');
    await repo.revokeApiKeysAbove(tx, id, role);
    return userView(row);
  });
}

/**
 * On an empty database, creates the admin account. Answers the generated password when none was
 * configured (to be printed once), null when the database already had users.
 */
export async function ensureAdmin(db: Db, admin: { email: string | undefined; password: string | undefined }): Promise<{ email: string; generatedPassword: string | null } | null> {
  const email = admin.email ?? 'admin@engine-room.local';
  const password = admin.password ?? randomBytes(18).toString('base64url');
  if ((await repo.countUsers(db)) > 0) return null;
  const passwordHash = await hashPassword(password);
  return db.transaction(async (tx) => {
    // Several processes may start at once on one database: only the first creates the admin.
    await tx.query('SELECT pg_advisory_xact_lock(7, 2)');
    if ((await repo.countUsers(tx)) > 0) return null;
    await repo.insertUser(tx, { id: newId('usr'), email, name: 'Administrator', role: 'admin', passwordHash });
    return { email, generatedPassword: admin.password ? null : password };
  });
}
