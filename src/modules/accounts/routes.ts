import type { FastifyInstance, FastifyReply } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Db } from '../../platform/db.ts';
import { routeOf } from '../../platform/endpoint.ts';
import { csrfTokenFor, principalOf, sessionCookie } from '../../platform/auth.ts';
import { decodeCursor, pageOf } from '../../platform/pagination.ts';
import { idempotent, keyedRequestOf, sendOutcome } from '../../platform/idempotency.ts';
import * as s from './schemas.ts';
import * as accounts from './service.ts';
import { listApiKeys, listSessions, searchUsers } from './repo.ts';

export interface AccountsDeps {
  db: Db;
  config: accounts.AccountsConfig & { secureCookies: boolean };
}

function setSessionCookie(reply: FastifyReply, token: string, expiresAt: string, secure: boolean) {
  reply.setCookie(sessionCookie, token, {
    httpOnly: true,
    secure,
    sameSite: 'strict',
    path: '/',
    expires: new Date(expiresAt),
  });
}

export function accountsRoutes(app: FastifyInstance, { db, config }: AccountsDeps): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.route({
    ...routeOf(s.signup),
    handler: async (request, reply) => {
      const { email, name } = request.body;
      const keyed = keyedRequestOf(request, {
        required: false,
        namespace: accounts.signupNamespace(email),
        hashed: { email: email.trim().toLowerCase(), name },
      });
      const { outcome, replayed } = await accounts.signup(db, config, request.body, request.ip, keyed);
      if (outcome.status !== 201) {
        await sendOutcome(reply, outcome, replayed);
        return;
      }
      const result = outcome.body as Awaited<ReturnType<typeof accounts.login>>;
      setSessionCookie(reply, result.token, result.expiresAt, config.secureCookies);
      await sendOutcome(reply, { status: 201, body: { ...result, csrfToken: csrfTokenFor(result.token) } }, replayed);
    },
  });

  r.route({
    ...routeOf(s.login),
    handler: async (request, reply) => {
      const result = await accounts.login(db, config, request.body, request.ip);
      setSessionCookie(reply, result.token, result.expiresAt, config.secureCookies);
      return { ...result, csrfToken: csrfTokenFor(result.token) };
    },
  });

  r.route({
    ...routeOf(s.logout),
    handler: async (request, reply) => {
      await accounts.logout(db, principalOf(request));
      reply.clearCookie(sessionCookie, { path: '/' });
      return reply.code(204).send(null);
    },
  });

  r.route({
    ...routeOf(s.me),
    handler: async (request) => accounts.me(db, principalOf(request)),
  });

  r.route({
    ...routeOf(s.session),
    handler: async (request) => {
      const principal = request.principal;
      if (!principal) return { user: null, csrfToken: null };
      const bearer = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '')?.[1];
      const token = bearer ?? request.cookies?.[sessionCookie];
      return {
        user: await accounts.me(db, principal),
        csrfToken: principal.via === 'session' && token ? csrfTokenFor(token) : null,
      };
    },
  });

  r.route({
    ...routeOf(s.createApiKey),
    handler: (request, reply) =>
      idempotent(db, request, reply, { required: false }, async (tx) => ({
        status: 201,
        body: await accounts.createApiKey(tx, principalOf(request), request.body),
      })),
  });

  r.route({
    ...routeOf(s.listApiKeys),
    handler: async (request) => {
      const { limit, cursor, createdBy } = request.query;
      const rows = await listApiKeys(db, decodeCursor(cursor), limit, createdBy ?? null);
      const page = pageOf(rows, limit, (row) => row.id);
      return { data: page.data.map(accounts.apiKeyView), nextCursor: page.nextCursor };
    },
  });

  r.route({
    ...routeOf(s.revokeApiKey),
    handler: async (request, reply) => {
      await accounts.revokeApiKey(db, request.params.id);
      return reply.code(204).send(null);
    },
  });

  r.route({
    ...routeOf(s.updateUser),
    handler: async (request) => accounts.changeRole(db, request.params.id, request.body.role),
  });

  r.route({
    ...routeOf(s.changePassword),
    handler: async (request, reply) => {
      await accounts.changePassword(db, config, principalOf(request), request.body);
      return reply.code(204).send(null);
    },
  });

  r.route({
    ...routeOf(s.logoutEverywhere),
    handler: async (request, reply) => {
      // A request without a body gets {} (platform/http.ts): all its fields are optional.
      await accounts.logoutEverywhere(db, principalOf(request), { revokeApiKeys: request.body.revokeApiKeys === true });
      reply.clearCookie(sessionCookie, { path: '/' });
      return reply.code(204).send(null);
    },
  });

  r.route({
    ...routeOf(s.requestPasswordReset),
    handler: async (request, reply) => {
      await accounts.requestPasswordReset(db, config, request.body.email, request.ip);
      return reply.code(202).send({ status: 'accepted' as const });
    },
  });

  r.route({
    ...routeOf(s.resetPassword),
    handler: async (request, reply) => {
      await accounts.resetPassword(db, request.body);
      return reply.code(204).send(null);
    },
  });

  r.route({
    ...routeOf(s.verifyEmail),
    handler: async (request, reply) => {
      await accounts.verifyEmail(db, request.body.token);
      return reply.code(204).send(null);
    },
  });

  r.route({
    ...routeOf(s.resendVerification),
    handler: async (request, reply) => {
      await accounts.resendVerification(db, config, principalOf(request));
      return reply.code(202).send({ status: 'accepted' as const });
    },
  });

  r.route({
    ...routeOf(s.listUsers),
    handler: async (request) => {
      const { limit, cursor, q, staff } = request.query;
      const query = q?.trim() || null;
      const rows = await searchUsers(db, { query, staff: staff === true, after: decodeCursor(cursor), limit });
      const page = pageOf(rows, limit, (row) => row.id);
      return { data: page.data.map(accounts.userView), nextCursor: page.nextCursor };
    },
  });

  r.route({
    ...routeOf(s.getUser),
    handler: async (request) => accounts.getUser(db, request.params.id),
  });

  r.route({
    ...routeOf(s.listUserSessions),
    handler: async (request) => {
      const { limit, cursor } = request.query;
      await accounts.getUser(db, request.params.id); // 404 for no such user
      const rows = await listSessions(db, request.params.id, decodeCursor(cursor), limit);
      const page = pageOf(rows, limit, (row) => row.id);
      return { data: page.data.map(accounts.sessionView), nextCursor: page.nextCursor };
    },
  });

  r.route({
    ...routeOf(s.disableUser),
    handler: (request, reply) =>
      idempotent(db, request, reply, { required: false }, async (tx) => ({
        status: 200,
        body: await accounts.disableUser(tx, principalOf(request), request.params.id),
      })),
  });

  r.route({
    ...routeOf(s.enableUser),
    handler: (request, reply) =>
      idempotent(db, request, reply, { required: false }, async (tx) => ({
        status: 200,
        body: await accounts.enableUser(tx, request.params.id),
      })),
  });
}
