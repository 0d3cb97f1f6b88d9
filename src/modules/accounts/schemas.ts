import { Type, type Static } from 'typebox';
import { endpoint } from '../../platform/endpoint.ts';
import { roles } from '../../platform/auth.ts';
import { IdParams, Page, PageQuery, Timestamp } from '../../platform/schemas.ts';
import { passwordRule } from './passwords.ts';

const tags = ['accounts'] as const;

export const RoleSchema = Type.Union([Type.Literal(roles[0]), Type.Literal(roles[1]), Type.Literal(roles[2])]);

export const UserSchema = Type.Object({
  id: Type.String(),
  email: Type.String(),
  name: Type.String(),
  role: RoleSchema,
  createdAt: Timestamp,
  emailVerified: Type.Boolean({
    description: 'Whether the user proved the address (matters only when EMAIL_VERIFICATION is on)',
  }),
  disabledAt: Type.Union([Timestamp, Type.Null()], {
    description: 'Set while the account is disabled: no login, no session, no API key of theirs works',
  }),
});
export type User = Static<typeof UserSchema>;

const Email = Type.String({ format: 'email', minLength: 3, maxLength: 254 });
const Password = Type.String({
  minLength: 8,
  maxLength: 256,
  description: `${passwordRule}: anything else is refused with 400 validation_failed naming the field.`,
});
/** A name people see (a user's, a key's): trimmed, and refused (400 validation_failed) when nothing visible is left. */
const Name = Type.String({
  minLength: 1,
  maxLength: 200,
  description: 'Trimmed of white space; must keep a visible character (400 validation_failed otherwise)',
});

const AuthResult = Type.Object({
  user: UserSchema,
  token: Type.String({ description: 'Session token for Authorization: Bearer; shown only here' }),
  expiresAt: Timestamp,
  csrfToken: Type.String({
    description: 'Send as X-CSRF-Token with unsafe requests that use the session cookie instead of the token',
  }),
});

export const signup = endpoint({
  operationId: 'signup',
  errors: ['email_taken'],
  rateLimit: 'auth',
  example: { body: { email: 'ada@example.com', password: 'correct horse battery staple', name: 'Ada Lovelace' } },
  method: 'POST',
  url: '/v1/auth/signup',
  access: 'public',
  tags,
  returnsSecret: true,
  idempotencyKey: 'optional',
  summary: 'Create a customer account and sign in',
  description: `The name is trimmed and must keep a visible character. ${passwordRule}; a refused name or password answers 400 validation_failed naming the field. A retry with the same Idempotency-Key and body answers 201 for the same account, with a new session token (tokens are never stored; the retry proves the password again, as a login does). Signups from one client address are limited per window (429 with Retry-After).`,
  body: Type.Object({ email: Email, password: Password, name: Name }, { additionalProperties: false }),
  response: { 201: AuthResult },
});

export const login = endpoint({
  operationId: 'login',
  errors: ['invalid_credentials'],
  rateLimit: 'auth',
  example: { body: { email: 'ada@example.com', password: 'correct horse battery staple' } },
  method: 'POST',
  url: '/v1/auth/login',
  access: 'public',
  tags,
  returnsSecret: true,
  summary: 'Sign in with email and password',
  description:
    'Repeated failures answer 429 with Retry-After before the password is checked: for one account from one client address (tightly), for one account from all addresses together (a much higher ceiling), and from one client address over all accounts.',
  body: Type.Object(
    { email: Type.String({ minLength: 1, maxLength: 254 }), password: Type.String({ minLength: 1, maxLength: 256 }) },
    { additionalProperties: false },
  ),
  response: { 200: AuthResult },
});

export const logout = endpoint({
  operationId: 'logout',
  errors: ['bad_request'],
  method: 'POST',
  url: '/v1/auth/logout',
  access: roles,
  tags,
  summary: 'Revoke the session token used for this request',
  response: { 204: Type.Null() },
});

export const me = endpoint({
  operationId: 'me',
  errors: [],
  method: 'GET',
  url: '/v1/me',
  access: roles,
  tags,
  summary: 'The signed-in user (for an API key: the key, with email null)',
  response: { 200: Type.Object({ ...UserSchema.properties, email: Type.Union([Type.String(), Type.Null()]) }) },
});

export const session = endpoint({
  operationId: 'session',
  errors: [],
  method: 'GET',
  url: '/v1/auth/session',
  access: 'public',
  tags,
  returnsSecret: true,
  summary: 'Who is signed in, and the CSRF token of this session',
  description:
    'For a browser page: the session cookie is HttpOnly, so after a reload the page asks here who is signed in and for the X-CSRF-Token its unsafe requests need. Anyone may ask: without a valid session (or token) the answer is 200 with user null, so a page can tell "signed out" without provoking an error. csrfToken is null for an API key, which needs none.',
  response: {
    200: Type.Object({
      user: Type.Union([me.response[200], Type.Null()]),
      csrfToken: Type.Union([Type.String(), Type.Null()]),
    }),
  },
});

const ApiKeySchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  role: RoleSchema,
  createdBy: Type.Union([Type.String(), Type.Null()], {
    description:
      "The user accountable for the key: the admin who created it, directly or with an API key they created. Lowering that user's role revokes their keys above the new role.",
  }),
  createdAt: Timestamp,
  revokedAt: Type.Union([Timestamp, Type.Null()]),
});

export const createApiKey = endpoint({
  operationId: 'createApiKey',
  errors: [],
  example: { body: { name: 'storefront', role: 'staff' } },
  method: 'POST',
  url: '/v1/api-keys',
  access: ['admin'],
  tags,
  idempotencyKey: 'optional',
  returnsSecret: true,
  summary: 'Create an API key; the key is shown only in this answer',
  body: Type.Object({ name: Name, role: RoleSchema }, { additionalProperties: false }),
  response: {
    201: Type.Object({
      id: Type.String(),
      name: Type.String(),
      role: RoleSchema,
      key: Type.String(),
      createdAt: Timestamp,
    }),
  },
});

export const listApiKeys = endpoint({
  operationId: 'listApiKeys',
  errors: [],
  method: 'GET',
  url: '/v1/api-keys',
  access: ['admin'],
  tags,
  summary: 'API keys, newest first (never the keys themselves)',
  querystring: Type.Object(
    {
      ...PageQuery.properties,
      createdBy: Type.Optional(
        Type.String({ minLength: 1, maxLength: 64, description: 'Only the keys this user is accountable for' }),
      ),
    },
    { additionalProperties: false },
  ),
  response: { 200: Page(ApiKeySchema) },
});

export const revokeApiKey = endpoint({
  operationId: 'revokeApiKey',
  errors: [],
  example: { params: { id: 'key_01m8hm26xcycv09qxv6cysjef0' } },
  method: 'DELETE',
  url: '/v1/api-keys/:id',
  access: ['admin'],
  tags,
  summary: 'Revoke an API key at once',
  params: IdParams,
  response: { 204: Type.Null() },
});

export const updateUser = endpoint({
  operationId: 'updateUser',
  errors: [],
  example: { params: { id: 'usr_01m8hkah7yxckqqy3g57wfhh3b' }, body: { role: 'staff' } },
  method: 'PATCH',
  url: '/v1/users/:id',
  access: ['admin'],
  tags,
  summary: "Change a user's role",
  description:
    'Lowering a role revokes, at once, the API keys that user is accountable for whose role is above the new one. Demoting the only admin answers 409 invalid_state.',
  params: IdParams,
  body: Type.Object({ role: RoleSchema }, { additionalProperties: false }),
  response: { 200: UserSchema },
});

// ---------------------------------------------------------------------------------------------
// Account recovery and control

const resetThrottle = 'Requests are limited per email address and per client address (429 with Retry-After).';

const RevokeApiKeys = Type.Optional(
  Type.Boolean({
    description:
      'Also revoke, at once, every API key this user is accountable for: those made with their sessions, and those made with such keys (default false: keys go on working).',
  }),
);

export const changePassword = endpoint({
  operationId: 'changePassword',
  errors: ['invalid_credentials', 'bad_request'],
  rateLimit: 'auth',
  example: {
    body: {
      currentPassword: 'correct horse battery staple',
      newPassword: 'a new and longer passphrase',
      revokeApiKeys: true,
    },
  },
  method: 'POST',
  url: '/v1/auth/password',
  access: roles,
  tags,
  summary: "Change the signed-in user's password",
  description:
    'The current password is required (wrong ones are throttled per account, as logins are). Every other session of the user ends at once; the session that made the change stays signed in. API keys the user is accountable for go on working unless revokeApiKeys is true (recovering from a compromise: revoke them, an attacker may have made one). An API key answers 400 bad_request.',
  body: Type.Object(
    {
      currentPassword: Type.String({ minLength: 1, maxLength: 256 }),
      newPassword: Password,
      revokeApiKeys: RevokeApiKeys,
    },
    { additionalProperties: false },
  ),
  response: { 204: Type.Null() },
});

export const logoutEverywhere = endpoint({
  operationId: 'logoutEverywhere',
  errors: ['bad_request'],
  example: { body: { revokeApiKeys: true } },
  method: 'POST',
  url: '/v1/auth/logout-all',
  access: roles,
  tags,
  summary: 'Sign out everywhere: revoke every session of the signed-in user, this one included',
  description:
    'Sessions are checked in the database on every request, so every process refuses them from the next request on. The body may be left out. API keys the user is accountable for go on working unless revokeApiKeys is true (recovering from a compromise: revoke them, an attacker may have made one).',
  body: Type.Object({ revokeApiKeys: RevokeApiKeys }, { additionalProperties: false }),
  response: { 204: Type.Null() },
});

export const requestPasswordReset = endpoint({
  operationId: 'requestPasswordReset',
  errors: [],
  rateLimit: 'auth',
  example: { body: { email: 'ada@example.com' } },
  method: 'POST',
  url: '/v1/auth/password-reset',
  access: 'public',
  tags,
  summary: 'Mail a password reset link to this address, if it has an account',
  description: `Always 202 with the same body, whether or not the address has an account; the mail (a single-use token valid for an hour) goes out through the queue. ${resetThrottle}`,
  body: Type.Object({ email: Type.String({ minLength: 1, maxLength: 254 }) }, { additionalProperties: false }),
  response: { 202: Type.Object({ status: Type.Literal('accepted') }) },
});

const TokenString = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_-]+$' });

export const resetPassword = endpoint({
  operationId: 'resetPassword',
  errors: ['invalid_token'],
  rateLimit: 'auth',
  example: { body: { token: 'err_3q2b1o0w1XyZ', password: 'a new and longer passphrase' } },
  method: 'POST',
  url: '/v1/auth/password-reset/confirm',
  access: 'public',
  tags,
  summary: 'Set a new password with the token of a reset mail',
  description:
    'The token works once and for an hour; using it ends every session of the user (sign in again with the new password) and revokes every API key the user is accountable for (a reset is how an account is taken back: whoever held it may have made one). 400 invalid_token for an unknown, used or expired token.',
  body: Type.Object({ token: TokenString, password: Password }, { additionalProperties: false }),
  response: { 204: Type.Null() },
});

export const verifyEmail = endpoint({
  operationId: 'verifyEmail',
  errors: ['invalid_token'],
  rateLimit: 'auth',
  example: { body: { token: 'erv_3q2b1o0w1XyZ' } },
  method: 'POST',
  url: '/v1/auth/verify-email',
  access: 'public',
  tags,
  summary: 'Verify an email address with the token of a verification mail',
  description:
    'With EMAIL_VERIFICATION on, signup mails a single-use token valid for 7 days; until it is used, the user may not place orders (403 email_unverified).',
  body: Type.Object({ token: TokenString }, { additionalProperties: false }),
  response: { 204: Type.Null() },
});

export const resendVerification = endpoint({
  operationId: 'resendVerification',
  errors: ['bad_request'],
  rateLimit: 'auth',
  method: 'POST',
  url: '/v1/auth/verify-email/resend',
  access: roles,
  tags,
  summary: 'Mail the verification link again',
  description: 'Nothing is sent to a user already verified. Limited per user (429 with Retry-After).',
  response: { 202: Type.Object({ status: Type.Literal('accepted') }) },
});

const admin = ['admin'] as const;

export const listUsers = endpoint({
  operationId: 'listUsers',
  errors: [],
  example: { query: { q: 'ada', limit: 20 } },
  method: 'GET',
  url: '/v1/users',
  access: admin,
  tags,
  summary: 'Users, newest first, searched by a prefix of the email or name',
  description:
    'q matches case-insensitively the start of the email or of the name (an index range scan at any size). staff=true keeps staff and admins only.',
  querystring: Type.Object(
    {
      ...PageQuery.properties,
      q: Type.Optional(Type.String({ minLength: 1, maxLength: 254 })),
      staff: Type.Optional(Type.Boolean()),
    },
    { additionalProperties: false },
  ),
  response: { 200: Page(UserSchema) },
});

export const getUser = endpoint({
  operationId: 'getUser',
  errors: [],
  example: { params: { id: 'usr_01m8hkah7yxckqqy3g57wfhh3b' } },
  method: 'GET',
  url: '/v1/users/:id',
  access: admin,
  tags,
  summary: 'One user',
  params: IdParams,
  response: { 200: UserSchema },
});

const SessionSchema = Type.Object({
  id: Type.String(),
  createdAt: Timestamp,
  expiresAt: Timestamp,
  revokedAt: Type.Union([Timestamp, Type.Null()]),
  live: Type.Boolean({ description: 'Neither revoked nor expired' }),
});

export const listUserSessions = endpoint({
  operationId: 'listUserSessions',
  errors: [],
  example: { params: { id: 'usr_01m8hkah7yxckqqy3g57wfhh3b' } },
  method: 'GET',
  url: '/v1/users/:id/sessions',
  access: admin,
  tags,
  summary: "A user's sessions, newest first (never their tokens)",
  params: IdParams,
  querystring: PageQuery,
  response: { 200: Page(SessionSchema) },
});

export const disableUser = endpoint({
  operationId: 'disableUser',
  errors: ['invalid_state'],
  example: { params: { id: 'usr_01m8hkah7yxckqqy3g57wfhh3b' } },
  method: 'POST',
  url: '/v1/users/:id/disable',
  access: admin,
  tags,
  idempotencyKey: 'optional',
  summary: 'Disable an account: end its sessions and revoke its API keys',
  description:
    'At once on every process. The user can no longer sign in (403 account_disabled) until enabled; their sessions and keys stay revoked after that. Disabling yourself or the only enabled admin answers 409 invalid_state.',
  params: IdParams,
  response: { 200: UserSchema },
});

export const enableUser = endpoint({
  operationId: 'enableUser',
  errors: [],
  example: { params: { id: 'usr_01m8hkah7yxckqqy3g57wfhh3b' } },
  method: 'POST',
  url: '/v1/users/:id/enable',
  access: admin,
  tags,
  idempotencyKey: 'optional',
  summary: 'Enable a disabled account again (the user signs in anew)',
  params: IdParams,
  response: { 200: UserSchema },
});
