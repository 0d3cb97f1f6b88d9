// Authorization as one mechanism: every route declares `config.access`, either 'public' or the
// roles it admits. A route that declares nothing stops the start (see checkAccessDeclared), so no
// route can forget it. Who the caller is comes from a resolver that the accounts module supplies at
// wiring time; this file knows nothing of how tokens are stored.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import { AppError } from '../errors.ts';

export const roles = ['customer', 'staff', 'admin'] as const;
export type Role = (typeof roles)[number];
export type Access = 'public' | readonly Role[];

/** Who is calling: a signed-in user through a session token or cookie, or an API key. */
export interface Principal {
  userId: string;
  role: Role;
  via: 'session' | 'api_key';
  /** The session or API key id; a logout revokes exactly this one. */
  credentialId: string;
  /** False for a user whose email is not verified; read with the session, at no extra cost. */
  emailVerified?: boolean;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
    /** A public route that checks a credential of its own (the metrics token): no session is looked up for it. */
    ownCredential?: boolean;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/**
 * What limits the callers authentication refuses (src/platform/api-rate-limit.ts supplies it): a
 * refused request is counted against its client address, and once that address is over its
 * allowance its tokens are no longer looked up.
 */
export interface CredentialGuard {
  /** Before a token is looked up; throws (429) when this client was refused too often. */
  beforeLookup(request: FastifyRequest, reply: FastifyReply): void | Promise<void>;
  /** After authentication refused the request (401 or 403); throws its own error (429) past the allowance. */
  refused(request: FastifyRequest, reply: FastifyReply): void | Promise<void>;
}

export const sessionCookie = 'er_session';
const unsafeMethods = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** The CSRF token that goes with a session: derived from it, so nothing more is stored. */
export function csrfTokenFor(sessionToken: string): string {
  return createHash('sha256')
    .update('csrf:' + sessionToken)
    .digest('base64url');
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function staffOrAbove(role: Role): boolean {
  return role === 'staff' || role === 'admin';
}

export interface DeclaredRoute {
  method: string;
  url: string;
  access: Access | undefined;
}

declare module 'fastify' {
  interface FastifyInstance {
    declaredRoutes: () => DeclaredRoute[];
  }
}

function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match) throw new AppError('unauthenticated', 'Authorization must be "Bearer <token>"');
  return match[1];
}

export function registerAuth(
  app: FastifyInstance,
  resolveToken: (token: string) => Promise<Principal | null>,
  guard?: CredentialGuard,
): void {
  app.decorateRequest('principal', null);
  const seen: RouteOptions[] = [];
  app.decorate('declaredRoutes', () =>
    seen.map((route) => ({
      method: String(route.method),
      url: route.url,
      access: route.config?.access,
    })),
  );
  app.addHook('onRoute', (route) => {
    seen.push(route);
    // The OpenAPI document shows which routes need a token, derived from the same declaration.
    const access = route.config?.access;
    if (access !== undefined && access !== 'public' && route.schema) {
      route.schema = {
        ...route.schema,
        security: [{ bearerAuth: [] }, { sessionCookie: [] }],
        description: [route.schema.description, `Roles: ${(access as Role[]).join(', ')}.`]
          .filter(Boolean)
          .join('\n\n'),
      };
    }
  });
  // Checked once every route is in (plugins may still set access in their own onRoute hooks).
  app.addHook('onReady', async () => {
    const missing = app.declaredRoutes().filter((r) => r.access === undefined);
    if (missing.length > 0)
      throw new Error(
        `routes declare no access (config.access): ${missing.map((r) => `${r.method} ${r.url}`).join(', ')}`,
      );
  });
  // onRequest, before the body is even read: an anonymous caller learns nothing about the schema
  // (401 comes before 400) and costs us no parsing.
  const authenticate = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const access = request.routeOptions.config.access;
    if (access === undefined) throw new AppError('forbidden'); // unreachable: onReady refuses such routes
    if (request.routeOptions.config.ownCredential) return;
    let token = bearerToken(request);
    let viaCookie = false;
    if (token === undefined) {
      token = request.cookies?.[sessionCookie];
      viaCookie = token !== undefined;
    }
    if (token !== undefined) {
      await guard?.beforeLookup(request, reply);
      request.principal = await resolveToken(token);
      if (request.principal === null && access !== 'public')
        throw new AppError('unauthenticated', 'The token is unknown, expired or revoked');
      // A browser sends the cookie on cross-site requests too; only a page of ours can read the CSRF token.
      if (viaCookie && request.principal && access !== 'public' && unsafeMethods.has(request.method)) {
        const sent = request.headers['x-csrf-token'];
        if (typeof sent !== 'string' || !sameSecret(sent, csrfTokenFor(token))) {
          throw new AppError('forbidden', 'A cookie-authenticated request must carry X-CSRF-Token');
        }
      }
    }
    if (access === 'public') return;
    if (!request.principal) throw new AppError('unauthenticated');
    if (!access.includes(request.principal.role)) throw new AppError('forbidden', 'Your role may not do this');
  };
  app.addHook('onRequest', async (request, reply) => {
    if (request.is404) return; // the not-found handler answers for itself
    try {
      await authenticate(request, reply);
    } catch (err) {
      // The API-wide limits count a request after authentication; a refused one would never be
      // counted, and a flood of made-up tokens would cost a lookup each for ever.
      if (guard && err instanceof AppError && (err.status === 401 || err.status === 403))
        await guard.refused(request, reply);
      throw err;
    }
  });
}

/** The principal of a route that admits no anonymous caller. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new AppError('unauthenticated');
  return request.principal;
}
