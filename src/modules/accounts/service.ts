// Accounts: signup, login with throttling, sessions, API keys, roles, and the first admin.
import { createHash, randomBytes } from 'node:crypto';
import type { Db, Queryable, Tx } from '../../platform/db.ts';
import { coalesce } from '../../platform/coalesce.ts';
import type { Principal, Role } from '../../platform/auth.ts';
import { newId } from '../../platform/ids.ts';
import { AppError, type FieldError } from '../../errors.ts';
import { clearHits, clientKey, removeHit, takeAttempt } from '../../platform/rate-limit.ts';
import {
  decoyHash,
  hashPassword,
  isCommonPassword,
  nothingVisible,
  passwordRule,
  verifyPassword,
} from './passwords.ts';
import * as repo from './repo.ts';
import type { User } from './schemas.ts';
import { runIdempotent, type KeyedRequest, type Outcome } from '../../platform/idempotency.ts';
import { enqueue } from '../../platform/queue.ts';

export interface AccountsConfig {
  sessionTtlSeconds: number;
  loginMaxFailuresPerAccountAndClient: number;
  loginMaxFailuresPerAccount: number;
  loginMaxFailuresPerClient: number;
  loginWindowSeconds: number;
  signupMaxPerClient: number;
  signupWindowSeconds: number;
  /** Signup sends a verification mail, and an unverified user may not place orders. */
  emailVerification: boolean;
  /** Reset requests per email address and per client address, within passwordResetWindowSeconds. */
  passwordResetMaxPerEmail: number;
  passwordResetMaxPerClient: number;
  passwordResetWindowSeconds: number;
}

/**
 * Account mail (a password reset, an email verification) is asked for by enqueuing a job on this
 * queue; the messaging module's worker makes the token and writes the mail (account-mail.ts).
 */
export const accountMailQueue = 'accounts.mail';
export type AccountMailJob =
  { purpose: 'password_reset'; email: string } | { purpose: 'email_verification'; userId: string };
const resetTokenPrefix = 'err_';
const verifyTokenPrefix = 'erv_';
export const tokenTtlSeconds = { password_reset: 3600, email_verification: 7 * 24 * 3600 } as const;

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
  return {
    id: row.id,
    email: row.email,
    name: row.name,
    role: row.role,
    createdAt: row.created_at.toISOString(),
    emailVerified: row.email_verified_at !== null,
    disabledAt: row.disabled_at?.toISOString() ?? null,
  };
}

function isUniqueViolation(err: unknown, constraint: string): boolean {
  const e = err as { code?: string; constraint?: string };
  return e?.code === '23505' && e.constraint === constraint;
}

async function startSession(db: Queryable, userId: string, ttlSeconds: number) {
  const token = newSecret(sessionPrefix);
  const expiresAt = await repo.insertSession(db, {
    id: newId('ses'),
    userId,
    tokenHash: hashSecret(token),
    ttlSeconds,
  });
  return { token, expiresAt: expiresAt.toISOString() };
}

// Names and passwords. A name is trimmed and must keep something visible (a name of spaces or of
// zero-width characters made a 0 x 0 link in the console); a password of nothing visible is refused
// as the most common ones are. Checked here, not by a schema pattern, to say what is wrong in words.

/** The name, trimmed; a name with nothing visible in it is a field error at path. */
function nameOf(name: string, path: string, errors: FieldError[]): string {
  const trimmed = name.trim();
  if (nothingVisible(trimmed)) errors.push({ path, message: 'must not be empty or only white space' });
  return trimmed;
}

function checkPassword(password: string, path: string, errors: FieldError[]): void {
  if (nothingVisible(password)) errors.push({ path, message: 'must not be only white space' });
  else if (isCommonPassword(password)) errors.push({ path, message: 'is one of the most common passwords' });
}

/** Throws 400 validation_failed for the field errors found, saying in the detail what is refused. */
function refuseFields(errors: FieldError[], passwordPath?: string): void {
  if (errors.length === 0) return;
  const details = errors.map((e) =>
    e.path === passwordPath ? `The password ${e.message}: ${passwordRule}.` : `The ${e.path.slice(1)} ${e.message}.`,
  );
  throw new AppError('validation_failed', details.join(' '), { errors });
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
export async function signup(
  db: Db,
  config: AccountsConfig,
  input: { email: string; password: string; name: string },
  clientAddress: string,
  keyed?: KeyedRequest,
): Promise<{ outcome: Outcome; replayed: boolean }> {
  const errors: FieldError[] = [];
  const name = nameOf(input.name, '/name', errors);
  checkPassword(input.password, '/password', errors);
  refuseFields(errors, '/password');
  // Every signup from one address counts, before the Argon2 work: taken emails cannot be probed
  // at will (the contract wants 409 email_taken), and nor can accounts be mass-created.
  const perClient = { bucket: `signup:client:${clientKey(clientAddress)}`, max: config.signupMaxPerClient };
  await takeAttempt(db, [perClient], config.signupWindowSeconds, 'Too many signups from this address; try again later');
  const passwordHash = await hashPassword(input.password);
  let session: { token: string; expiresAt: string } | undefined;
  const { outcome, replayed } = await runIdempotent(db, keyed, async (tx) => {
    let user: repo.UserRow;
    try {
      user = await repo.insertUser(tx, {
        id: newId('usr'),
        email: input.email.trim(),
        name,
        role: 'customer',
        passwordHash,
      });
    } catch (err) {
      if (isUniqueViolation(err, 'users_email_unique'))
        throw new AppError('email_taken', 'An account with this email exists');
      throw err;
    }
    session = await startSession(tx, user.id, config.sessionTtlSeconds);
    if (config.emailVerification)
      await enqueue(tx, accountMailQueue, { purpose: 'email_verification', userId: user.id } satisfies AccountMailJob);
    return { status: 201, body: { user: userView(user) } };
  });
  if (outcome.status !== 201) return { outcome, replayed };
  if (!replayed)
    return { outcome: { status: 201, body: { ...(outcome.body as { user: User }), ...session! } }, replayed };
  try {
    return { outcome: { status: 201, body: await login(db, config, input, clientAddress) }, replayed };
  } catch (err) {
    if (err instanceof AppError && err.code === 'invalid_credentials')
      throw new AppError('idempotency_key_reused', 'This Idempotency-Key was used for a different request');
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
export async function login(
  db: Db,
  config: AccountsConfig,
  input: { email: string; password: string },
  clientAddress: string,
) {
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
  const ok = await verifyPassword(user?.password_hash ?? (await decoyHash()), input.password);
  if (!user || !ok) throw new AppError('invalid_credentials', 'The email or password is wrong');
  // Said only to whoever knows the password: it tells them nothing they could not find out by owning it.
  if (user.disabled_at) throw new AppError('account_disabled', 'This account is disabled; ask the shop to enable it');
  await Promise.all([
    clearHits(db, [pair.bucket]),
    removeHit(db, account.bucket, window),
    removeHit(db, perClient.bucket, window),
  ]);
  return { user: userView(user), ...(await startSession(db, user.id, config.sessionTtlSeconds)) };
}

export async function logout(db: Db, principal: Principal): Promise<void> {
  if (principal.via !== 'session')
    throw new AppError('bad_request', 'API keys are revoked with DELETE /v1/api-keys/{id}, not logged out');
  await repo.revokeSession(db, principal.credentialId);
}

/**
 * The principal behind a bearer token, or null. Session lookups that arrive while others run go
 * together, as one query (every request starts with one, so under load this saves a round trip per request). A
 * lookup always starts after its request arrived, so a logout committed before is always seen.
 */
export function tokenResolver(db: Db): (token: string) => Promise<Principal | null> {
  const sessions = coalesce<string, Principal>(
    async (hexHashes) =>
      repo.principalsBySessionHashes(
        db,
        hexHashes.map((h) => Buffer.from(h, 'hex')),
      ),
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
    return {
      id: key.id,
      email: null,
      name: key.name,
      role: key.role,
      createdAt: key.created_at.toISOString(),
      emailVerified: true,
      disabledAt: null,
    };
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
  const accountable =
    principal.via === 'session'
      ? principal.userId
      : ((await repo.findApiKey(tx, principal.credentialId))?.created_by ?? null);
  if (accountable !== null && (await repo.lockRole(tx, accountable)) !== 'admin')
    throw new AppError('forbidden', 'Your role may not do this');
  const errors: FieldError[] = [];
  const name = nameOf(input.name, '/name', errors);
  refuseFields(errors);
  const key = newSecret(apiKeyPrefix);
  const row = await repo.insertApiKey(tx, {
    id: newId('key'),
    name,
    role: input.role,
    keyHash: hashSecret(key),
    createdBy: accountable,
  });
  return { id: row.id, name: row.name, role: row.role, key, createdAt: row.created_at.toISOString() };
}

export function apiKeyView(row: repo.ApiKeyRow) {
  return {
    id: row.id,
    name: row.name,
    role: row.role,
    createdBy: row.created_by,
    createdAt: row.created_at.toISOString(),
    revokedAt: row.revoked_at?.toISOString() ?? null,
  };
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
      if (admins.length === 1 && admins[0] === id)
        throw new AppError('invalid_state', 'This is the only admin: make another user admin first');
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
export async function ensureAdmin(
  db: Db,
  admin: { email: string | undefined; password: string | undefined },
): Promise<{ email: string; generatedPassword: string | null } | null> {
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

// ---------------------------------------------------------------------------------------------
// Account recovery and control

function sessionOnly(principal: Principal, what: string): string {
  if (principal.via !== 'session')
    throw new AppError('bad_request', `An API key has no password or sessions: ${what} needs a signed-in user`);
  return principal.userId;
}

/** The hash of a new password, once it passes the rules (path: its field in the request). */
async function acceptablePassword(password: string, path: string): Promise<string> {
  const errors: FieldError[] = [];
  checkPassword(password, path, errors);
  refuseFields(errors, path);
  return hashPassword(password);
}

/**
 * Changes the password of the signed-in user, proving the current one first (throttled as logins
 * are, per account: a stolen session cannot guess its way to the password). Every other session of
 * the user ends; the one that made the change goes on (the user just proved the password with it).
 * Their API keys go on too unless revokeApiKeys: a key is often a running integration, and a
 * routine change of password should not stop it; after a compromise the user asks for it.
 */
export async function changePassword(
  db: Db,
  config: AccountsConfig,
  principal: Principal,
  input: { currentPassword: string; newPassword: string; revokeApiKeys?: boolean },
): Promise<void> {
  const userId = sessionOnly(principal, 'changing a password');
  const attempt = { bucket: `password-change:${userId}`, max: config.loginMaxFailuresPerAccountAndClient };
  await takeAttempt(db, [attempt], config.loginWindowSeconds, 'Too many wrong passwords; try again later');
  const user = await repo.findUserById(db, userId);
  if (!user || !(await verifyPassword(user.password_hash, input.currentPassword))) {
    throw new AppError('invalid_credentials', 'The current password is wrong');
  }
  await removeHit(db, attempt.bucket, config.loginWindowSeconds);
  const passwordHash = await acceptablePassword(input.newPassword, '/newPassword');
  await db.transaction(async (tx) => {
    await repo.setPasswordHash(tx, userId, passwordHash);
    await repo.revokeSessionsOf(tx, userId, principal.credentialId);
    if (input.revokeApiKeys) await repo.revokeApiKeysOf(tx, userId);
  });
}

/**
 * Ends every session of the signed-in user, this one too, at once (sessions live only in the
 * database); with revokeApiKeys, the API keys they are accountable for as well, in the same transaction.
 */
export async function logoutEverywhere(
  db: Db,
  principal: Principal,
  options: { revokeApiKeys?: boolean } = {},
): Promise<void> {
  const userId = sessionOnly(principal, 'signing out everywhere');
  await db.transaction(async (tx) => {
    await repo.revokeSessionsOf(tx, userId, null);
    if (options.revokeApiKeys) await repo.revokeApiKeysOf(tx, userId);
  });
}

/**
 * Asks for a password reset mail. The answer and the work are the same whether or not the email
 * has an account: count the attempt (per email address and per client), enqueue a job; the worker
 * finds the user and writes the mail, so neither the answer nor its timing tells who has an account.
 * The job carries only the address, never a token.
 */
export async function requestPasswordReset(
  db: Db,
  config: AccountsConfig,
  email: string,
  clientAddress: string,
): Promise<void> {
  const address = email.trim().toLowerCase();
  await takeAttempt(
    db,
    [
      { bucket: `reset:client:${clientKey(clientAddress)}`, max: config.passwordResetMaxPerClient },
      { bucket: `reset:email:${address}`, max: config.passwordResetMaxPerEmail },
    ],
    config.passwordResetWindowSeconds,
    'Too many password reset requests; try again later',
  );
  await db.transaction((tx) =>
    enqueue(tx, accountMailQueue, { purpose: 'password_reset', email: address } satisfies AccountMailJob),
  );
}

/** A new single-use token of the purpose for the user, stored as its SHA-256 only; answers the token (for the mail). */
export async function issueAccountToken(tx: Tx, userId: string, purpose: repo.TokenPurpose): Promise<string> {
  const token = newSecret(purpose === 'password_reset' ? resetTokenPrefix : verifyTokenPrefix);
  await repo.insertAccountToken(tx, {
    id: newId('tok'),
    userId,
    purpose,
    tokenHash: hashSecret(token),
    ttlSeconds: tokenTtlSeconds[purpose],
  });
  return token;
}

const invalidToken = () => new AppError('invalid_token', 'The token is unknown, used or expired; ask for a new one');

/**
 * Sets a new password with a reset token: the token is used (once: a conditional UPDATE, so of 200
 * parallel resets with one token exactly one succeeds), every other reset token of the user too,
 * every session of the user ends and every API key they are accountable for is revoked (a reset is
 * how an account is taken back, and whoever held it may have made a key to keep a way in). The token is looked up before the Argon2 work, so a stream of
 * made-up tokens costs one index probe each.
 */
export async function resetPassword(db: Db, input: { token: string; password: string }): Promise<void> {
  const tokenHash = hashSecret(input.token);
  if (!(await repo.liveTokenUser(db, tokenHash, 'password_reset'))) throw invalidToken();
  const passwordHash = await acceptablePassword(input.password, '/password');
  await db.transaction(async (tx) => {
    const userId = await repo.useToken(tx, tokenHash, 'password_reset');
    if (!userId) throw invalidToken();
    const user = await repo.lockUser(tx, userId);
    if (!user || user.disabled_at) throw invalidToken();
    await repo.setPasswordHash(tx, userId, passwordHash);
    await repo.revokeSessionsOf(tx, userId, null);
    await repo.revokeApiKeysOf(tx, userId);
  });
}

export async function verifyEmail(db: Db, token: string): Promise<void> {
  await db.transaction(async (tx) => {
    const userId = await repo.useToken(tx, hashSecret(token), 'email_verification');
    if (!userId) throw invalidToken();
    await repo.markEmailVerified(tx, userId);
  });
}

/** Sends the verification mail again (throttled per user); a verified user gets nothing new. */
export async function resendVerification(db: Db, config: AccountsConfig, principal: Principal): Promise<void> {
  const userId = sessionOnly(principal, 'verifying an email');
  await takeAttempt(
    db,
    [{ bucket: `verify:user:${userId}`, max: config.passwordResetMaxPerEmail }],
    config.passwordResetWindowSeconds,
    'Too many verification mails; try again later',
  );
  const user = await repo.findUserById(db, userId);
  if (!user || user.email_verified_at) return;
  await db.transaction((tx) =>
    enqueue(tx, accountMailQueue, { purpose: 'email_verification', userId } satisfies AccountMailJob),
  );
}

/** Refuses an unverified user when verification is on; app.ts hands this to the orders module. */
export function buyerCheck(config: { emailVerification: boolean }): (principal: Principal) => void {
  return (principal) => {
    if (config.emailVerification && principal.emailVerified === false) {
      throw new AppError(
        'email_unverified',
        'Verify your email address before placing orders (POST /v1/auth/verify-email/resend sends the mail again)',
      );
    }
  };
}

export async function getUser(db: Db, id: string): Promise<User> {
  const row = await repo.findUserById(db, id);
  if (!row) throw new AppError('not_found', 'No such user');
  return userView(row);
}

/**
 * Disables an account: every session ends and every API key the user is accountable for is
 * revoked, in one transaction; login answers 403 account_disabled from then on. Sessions and keys
 * are looked up in the database on every request (tokenResolver caches nothing), so every process
 * refuses them at the next request. An admin cannot disable themselves, nor the last enabled admin.
 */
export async function disableUser(tx: Tx, actor: Principal, id: string): Promise<User> {
  const admins = await repo.lockAdmins(tx);
  const user = await repo.lockUser(tx, id);
  if (!user) throw new AppError('not_found', 'No such user');
  if (actor.via === 'session' && actor.userId === id)
    throw new AppError('invalid_state', 'You cannot disable your own account');
  if (user.role === 'admin' && !user.disabled_at && admins.length === 1 && admins[0] === id) {
    throw new AppError('invalid_state', 'This is the only admin: make another user admin first');
  }
  const row = await repo.setDisabled(tx, id, true);
  await repo.revokeSessionsOf(tx, id, null);
  await repo.revokeApiKeysOf(tx, id);
  return userView(row!);
}

/** Enables an account again; its revoked sessions and keys stay revoked (the user signs in anew). */
export async function enableUser(db: Queryable, id: string): Promise<User> {
  const row = await repo.setDisabled(db, id, false);
  if (!row) throw new AppError('not_found', 'No such user');
  return userView(row);
}

export function sessionView(row: repo.SessionRow) {
  const live = row.revoked_at === null && row.expires_at.getTime() > Date.now();
  return {
    id: row.id,
    createdAt: row.created_at.toISOString(),
    expiresAt: row.expires_at.toISOString(),
    revokedAt: row.revoked_at?.toISOString() ?? null,
    live,
  };
}
