import { Type, type Static } from 'typebox';
import { endpoint } from '../../platform/endpoint.ts';
import { roles } from '../../platform/auth.ts';
import { IdParams, Page, PageQuery, Timestamp } from '../../platform/schemas.ts';

const tags = ['accounts'] as const;

export const RoleSchema = Type.Union([Type.Literal(roles[0]), Type.Literal(roles[1]), Type.Literal(roles[2])]);

export const UserSchema = Type.Object({
  id: Type.String(),
  email: Type.String(),
  name: Type.String(),
  role: RoleSchema,
  createdAt: Timestamp,
});
export type User = Static<typeof UserSchema>;

const Email = Type.String({ format: 'email', minLength: 3, maxLength: 254 });
const Password = Type.String({ minLength: 8, maxLength: 256 });

const AuthResult = Type.Object({
  user: UserSchema,
  token: Type.String({ description: 'Session token for Authorization: Bearer; shown only here' }),
  expiresAt: Timestamp,
  csrfToken: Type.String({ description: 'Send as X-CSRF-Token with unsafe requests that use the session cookie instead of the token' }),
});

export const signup = endpoint({
  operationId: 'signup', errors: ['email_taken'], rateLimit: 'auth',
  example: { body: { email: 'ada@example.com', password: 'correct horse battery staple', name: 'Ada Lovelace' } },
  method: 'POST', url: '/v1/auth/signup', access: 'public', tags, returnsSecret: true, idempotencyKey: 'optional',
  summary: 'Create a customer account and sign in',
  description: 'A retry with the same Idempotency-Key and body answers 201 for the same account, with a new session token (tokens are never stored; the retry proves the password again, as a login does). Signups from one client address are limited per window (429 with Retry-After).',
  body: Type.Object({ email: Email, password: Password, name: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false }),
  response: { 201: AuthResult },
});

export const login = endpoint({
  operationId: 'login', errors: ['invalid_credentials'], rateLimit: 'auth',
  example: { body: { email: 'ada@example.com', password: 'correct horse battery staple' } },
  method: 'POST', url: '/v1/auth/login', access: 'public', tags, returnsSecret: true,
  summary: 'Sign in with email and password',
  description: 'Repeated failures answer 429 with Retry-After before the password is checked: for one account from one client address (tightly), for one account from all addresses together (a much higher ceiling), and from one client address over all accounts.',
  body: Type.Object({ email: Type.String({ minLength: 1, maxLength: 254 }), password: Type.String({ minLength: 1, maxLength: 256 }) }, { additionalProperties: false }),
  response: { 200: AuthResult },
});

export const logout = endpoint({
  operationId: 'logout', errors: ['bad_request'],
  method: 'POST', url: '/v1/auth/logout', access: roles, tags,
  summary: 'Revoke the session token used for this request',
  response: { 204: Type.Null() },
});

export const me = endpoint({
  operationId: 'me', errors: [],
  method: 'GET', url: '/v1/me', access: roles, tags,
  summary: 'The signed-in user (for an API key: the key, with email null)',
  response: { 200: Type.Object({ id: Type.String(), email: Type.Union([Type.String(), Type.Null()]), name: Type.String(), role: RoleSchema, createdAt: Timestamp }) },
});

export const session = endpoint({
  operationId: 'session', errors: [],
  method: 'GET', url: '/v1/auth/session', access: 'public', tags, returnsSecret: true,
  summary: 'Who is signed in, and the CSRF token of this session',
  description: 'For a browser page: the session cookie is HttpOnly, so after a reload the page asks here who is signed in and for the X-CSRF-Token its unsafe requests need. Anyone may ask: without a valid session (or token) the answer is 200 with user null, so a page can tell "signed out" without provoking an error. csrfToken is null for an API key, which needs none.',
  response: { 200: Type.Object({ user: Type.Union([me.response[200], Type.Null()]), csrfToken: Type.Union([Type.String(), Type.Null()]) }) },
});

const ApiKeySchema = Type.Object({
  id: Type.String(), name: Type.String(), role: RoleSchema,
  createdBy: Type.Union([Type.String(), Type.Null()], { description: 'The user accountable for the key: the admin who created it, directly or with an API key they created. Lowering that user\'s role revokes their keys above the new role.' }),
  createdAt: Timestamp, revokedAt: Type.Union([Timestamp, Type.Null()]),
});

export const createApiKey = endpoint({
  operationId: 'createApiKey', errors: [],
  example: { body: { name: 'storefront', role: 'staff' } },
  method: 'POST', url: '/v1/api-keys', access: ['admin'], tags, idempotencyKey: 'optional', returnsSecret: true,
  summary: 'Create an API key; the key is shown only in this answer',
  body: Type.Object({ name: Type.String({ minLength: 1, maxLength: 200 }), role: RoleSchema }, { additionalProperties: false }),
  response: { 201: Type.Object({ id: Type.String(), name: Type.String(), role: RoleSchema, key: Type.String(), createdAt: Timestamp }) },
});

export const listApiKeys = endpoint({
  operationId: 'listApiKeys', errors: [],
  method: 'GET', url: '/v1/api-keys', access: ['admin'], tags,
  summary: 'API keys, newest first (never the keys themselves)',
  querystring: PageQuery,
  response: { 200: Page(ApiKeySchema) },
});

export const revokeApiKey = endpoint({
  operationId: 'revokeApiKey', errors: [],
  example: { params: { id: 'key_01m8hm26xcycv09qxv6cysjef0' } },
  method: 'DELETE', url: '/v1/api-keys/:id', access: ['admin'], tags,
  summary: 'Revoke an API key at once',
  params: IdParams,
  response: { 204: Type.Null() },
});

export const updateUser = endpoint({
  operationId: 'updateUser', errors: [],
  example: { params: { id: 'usr_01m8hkah7yxckqqy3g57wfhh3b' }, body: { role: 'staff' } },
  method: 'PATCH', url: '/v1/users/:id', access: ['admin'], tags,
  summary: "Change a user's role",
  description: 'Lowering a role revokes, at once, the API keys that user is accountable for whose role is above the new one. Demoting the only admin answers 409 invalid_state.',
  params: IdParams,
  body: Type.Object({ role: RoleSchema }, { additionalProperties: false }),
  response: { 200: UserSchema },
});
