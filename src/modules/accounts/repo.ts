// SQL of the accounts module. Every function takes the connection or transaction to run on.
import type { Queryable, Tx } from '../../platform/db.ts';
import type { Principal, Role } from '../../platform/auth.ts';
import type { ApiKeysRow, Refine, SessionsRow, UsersRow } from '../../db/rows.ts';

export type UserRow = Refine<UsersRow, { role: Role }>;

export async function insertUser(
  db: Queryable,
  user: { id: string; email: string; name: string; role: Role; passwordHash: string },
): Promise<UserRow> {
  const [row] = await db.query<UserRow>(
    `INSERT INTO users (id, email, name, role, password_hash) VALUES ($1, $2, $3, $4, $5) RETURNING *`,
    [user.id, user.email, user.name, user.role, user.passwordHash],
  );
  return row!;
}

export async function findUserByEmail(db: Queryable, email: string): Promise<UserRow | undefined> {
  const [row] = await db.query<UserRow>('SELECT * FROM users WHERE lower(email) = lower($1)', [email]);
  return row;
}

export async function findUserById(db: Queryable, id: string): Promise<UserRow | undefined> {
  const [row] = await db.query<UserRow>('SELECT * FROM users WHERE id = $1', [id]);
  return row;
}

export function findUsersByIds(db: Queryable, ids: string[]): Promise<UserRow[]> {
  return db.query<UserRow>('SELECT * FROM users WHERE id = ANY($1::text[])', [ids]);
}

/** Locks every admin's row, in id order (so two transactions doing this never deadlock), and answers their ids. */
export async function lockAdmins(tx: Tx): Promise<string[]> {
  // A disabled admin is no admin: only enabled ones count (a disabled user cannot sign in).
  const rows = await tx.query<{ id: string }>(
    "SELECT id FROM users WHERE role = 'admin' AND disabled_at IS NULL ORDER BY id FOR UPDATE",
  );
  return rows.map((r) => r.id);
}

/** A user's current role, with their row locked against a role change until the transaction ends. */
export async function lockRole(tx: Tx, id: string): Promise<Role | undefined> {
  const [row] = await tx.query<{ role: Role }>('SELECT role FROM users WHERE id = $1 FOR SHARE', [id]);
  return row?.role;
}

export async function setUserRole(db: Queryable, id: string, role: Role): Promise<UserRow | undefined> {
  const [row] = await db.query<UserRow>('UPDATE users SET role = $2, updated_at = now() WHERE id = $1 RETURNING *', [
    id,
    role,
  ]);
  return row;
}

export async function countUsers(db: Queryable): Promise<number> {
  const [row] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM users');
  return row!.n;
}

export async function insertSession(
  db: Queryable,
  s: { id: string; userId: string; tokenHash: Buffer; ttlSeconds: number },
): Promise<Date> {
  const [row] = await db.query<Pick<SessionsRow, 'expires_at'>>(
    `INSERT INTO sessions (id, user_id, token_hash, expires_at) VALUES ($1, $2, $3, now() + make_interval(secs => $4))
     RETURNING expires_at`,
    [s.id, s.userId, s.tokenHash, s.ttlSeconds],
  );
  return row!.expires_at;
}

export async function revokeSession(db: Queryable, id: string): Promise<void> {
  await db.query('UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL', [id]);
}

/** The principal behind a session token hash: live session, current role of its user. */
/** The principals of the live sessions among these token hashes, by the hash in hex (one query). */
export async function principalsBySessionHashes(db: Queryable, tokenHashes: Buffer[]): Promise<Map<string, Principal>> {
  const rows = await db.query<
    Pick<SessionsRow, 'token_hash' | 'id' | 'user_id'> & Pick<UserRow, 'role'> & { email_verified: boolean }
  >(
    `SELECT s.token_hash, s.id, s.user_id, u.role, u.email_verified_at IS NOT NULL AS email_verified FROM sessions s JOIN users u ON u.id = s.user_id
      WHERE s.token_hash = ANY($1::bytea[]) AND s.revoked_at IS NULL AND s.expires_at > now() AND u.disabled_at IS NULL`,
    [tokenHashes],
  );
  return new Map(
    rows.map((row) => [
      Buffer.from(row.token_hash).toString('hex'),
      {
        userId: row.user_id,
        role: row.role,
        via: 'session',
        credentialId: row.id,
        emailVerified: row.email_verified,
      } satisfies Principal,
    ]),
  );
}

export type ApiKeyRow = Refine<
  Pick<ApiKeysRow, 'id' | 'name' | 'role' | 'created_by' | 'created_at' | 'revoked_at'>,
  { role: Role }
>;

const apiKeyColumns = 'id, name, role, created_by, created_at, revoked_at';

export async function insertApiKey(
  db: Queryable,
  k: { id: string; name: string; role: Role; keyHash: Buffer; createdBy: string | null },
): Promise<ApiKeyRow> {
  const [row] = await db.query<ApiKeyRow>(
    `INSERT INTO api_keys (id, name, role, key_hash, created_by) VALUES ($1, $2, $3, $4, $5) RETURNING ${apiKeyColumns}`,
    [k.id, k.name, k.role, k.keyHash, k.createdBy],
  );
  return row!;
}

export async function listApiKeys(
  db: Queryable,
  after: string | null,
  limit: number,
  createdBy: string | null = null,
): Promise<ApiKeyRow[]> {
  return db.query<ApiKeyRow>(
    `SELECT ${apiKeyColumns} FROM api_keys WHERE ($1::text IS NULL OR id < $1) AND ($3::text IS NULL OR created_by = $3) ORDER BY id DESC LIMIT $2`,
    [after, limit + 1, createdBy],
  );
}

export async function findApiKey(db: Queryable, id: string): Promise<ApiKeyRow | undefined> {
  const [row] = await db.query<ApiKeyRow>(`SELECT ${apiKeyColumns} FROM api_keys WHERE id = $1`, [id]);
  return row;
}

/** Revokes the live keys a user is accountable for whose role is above the given one; answers their ids. */
export async function revokeApiKeysAbove(tx: Tx, userId: string, role: Role): Promise<string[]> {
  const rows = await tx.query<{ id: string }>(
    `UPDATE api_keys SET revoked_at = now()
      WHERE created_by = $1 AND revoked_at IS NULL
        AND array_position(ARRAY['customer', 'staff', 'admin'], role) > array_position(ARRAY['customer', 'staff', 'admin'], $2)
      RETURNING id`,
    [userId, role],
  );
  return rows.map((r) => r.id);
}

/** Answers false when no such key exists (an already revoked one still counts as found). */
export async function revokeApiKey(db: Queryable, id: string): Promise<boolean> {
  const rows = await db.query(
    'UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING id',
    [id],
  );
  return rows.length > 0;
}

export async function principalByApiKeyHash(db: Queryable, keyHash: Buffer): Promise<Principal | null> {
  // A key is only as good as its accountable user: none of a disabled user's keys works (disabling
  // revokes them too; this also covers a key made in the instant before).
  const [row] = await db.query<{ id: string; role: Role }>(
    `SELECT k.id, k.role FROM api_keys k LEFT JOIN users u ON u.id = k.created_by
      WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND u.disabled_at IS NULL`,
    [keyHash],
  );
  return row ? { userId: row.id, role: row.role, via: 'api_key', credentialId: row.id, emailVerified: true } : null;
}

// ---------------------------------------------------------------------------------------------
// Account recovery and control

/** Escapes LIKE's wildcards, so a search for "a_b%" matches those characters. */
function likePrefix(text: string): string {
  return text.toLowerCase().replace(/[\\%_]/g, (c) => '\\' + c) + '%';
}

/**
 * Users, newest first; `query` is a case-insensitive prefix of the email or of the name (each an
 * index range scan, users_email_prefix and users_name_prefix, combined by a bitmap OR); `staff`
 * keeps staff and admins only (the small partial index users_staff).
 */
export function searchUsers(
  db: Queryable,
  opts: { query: string | null; staff: boolean; after: string | null; limit: number },
): Promise<UserRow[]> {
  return db.query<UserRow>(
    `SELECT * FROM users
      WHERE ($1::text IS NULL OR lower(email) LIKE $1 OR lower(name) LIKE $1)
        AND (NOT $2::boolean OR role <> 'customer')
        AND ($3::text IS NULL OR id < $3)
      ORDER BY id DESC LIMIT $4`,
    [opts.query === null ? null : likePrefix(opts.query), opts.staff, opts.after, opts.limit + 1],
  );
}

export type SessionRow = Pick<SessionsRow, 'id' | 'created_at' | 'expires_at' | 'revoked_at'>;

export function listSessions(
  db: Queryable,
  userId: string,
  after: string | null,
  limit: number,
): Promise<SessionRow[]> {
  return db.query<SessionRow>(
    `SELECT id, created_at, expires_at, revoked_at FROM sessions
      WHERE user_id = $1 AND ($2::text IS NULL OR id < $2) ORDER BY id DESC LIMIT $3`,
    [userId, after, limit + 1],
  );
}

/** Revokes every live session of the user but `keep` (null: all); answers how many. */
export async function revokeSessionsOf(db: Queryable, userId: string, keep: string | null): Promise<number> {
  const rows = await db.query(
    `UPDATE sessions SET revoked_at = now()
      WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() AND ($2::text IS NULL OR id <> $2) RETURNING id`,
    [userId, keep],
  );
  return rows.length;
}

export async function revokeApiKeysOf(tx: Tx, userId: string): Promise<number> {
  const rows = await tx.query(
    'UPDATE api_keys SET revoked_at = now() WHERE created_by = $1 AND revoked_at IS NULL RETURNING id',
    [userId],
  );
  return rows.length;
}

export async function lockUser(tx: Tx, id: string): Promise<UserRow | undefined> {
  const [row] = await tx.query<UserRow>('SELECT * FROM users WHERE id = $1 FOR UPDATE', [id]);
  return row;
}

export async function setDisabled(db: Queryable, id: string, disabled: boolean): Promise<UserRow | undefined> {
  const [row] = await db.query<UserRow>(
    `UPDATE users SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END, updated_at = now() WHERE id = $1 RETURNING *`,
    [id, disabled],
  );
  return row;
}

export async function setPasswordHash(db: Queryable, id: string, passwordHash: string): Promise<void> {
  await db.query('UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1', [id, passwordHash]);
}

export async function markEmailVerified(db: Queryable, id: string): Promise<void> {
  await db.query(
    'UPDATE users SET email_verified_at = coalesce(email_verified_at, now()), updated_at = now() WHERE id = $1',
    [id],
  );
}

export type TokenPurpose = 'password_reset' | 'email_verification';

export async function insertAccountToken(
  db: Queryable,
  t: { id: string; userId: string; purpose: TokenPurpose; tokenHash: Buffer; ttlSeconds: number },
): Promise<void> {
  await db.query(
    `INSERT INTO account_tokens (id, user_id, purpose, token_hash, expires_at) VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))`,
    [t.id, t.userId, t.purpose, t.tokenHash, t.ttlSeconds],
  );
}

/** The user of a live (unused, unexpired) token of this purpose, without using it. */
export async function liveTokenUser(
  db: Queryable,
  tokenHash: Buffer,
  purpose: TokenPurpose,
): Promise<string | undefined> {
  const [row] = await db.query<{ user_id: string }>(
    'SELECT user_id FROM account_tokens WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()',
    [tokenHash, purpose],
  );
  return row?.user_id;
}

/**
 * Uses a live token: one conditional UPDATE, so of any number of concurrent uses exactly one gets
 * the user id back. Every other live token of that user and purpose is used up with it.
 */
export async function useToken(tx: Tx, tokenHash: Buffer, purpose: TokenPurpose): Promise<string | undefined> {
  const [row] = await tx.query<{ user_id: string }>(
    `UPDATE account_tokens SET used_at = now()
      WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now() RETURNING user_id`,
    [tokenHash, purpose],
  );
  if (!row) return undefined;
  await tx.query('UPDATE account_tokens SET used_at = now() WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL', [
    row.user_id,
    purpose,
  ]);
  return row.user_id;
}
