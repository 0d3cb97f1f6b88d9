// Who may read /metrics and /metrics/system. They tell the shop's revenue (paid amounts per
// currency), order counts, queue sizes and every route's 401 and 429 counts: not for the public.
// - METRICS_TOKEN set: the request must carry it as a bearer token (Prometheus's `authorization`
//   or `bearer_token_file`), from any address. Compared as SHA-256 digests in constant time, so
//   neither the token nor its length shows in the time of an answer.
// - Unset: only a request from loopback that no proxy forwarded (no X-Forwarded-For, Forwarded or
//   X-Real-IP header) is answered: a Prometheus or an operator on the machine. A reverse proxy on
//   the same machine connects from loopback too, and adds those headers, so what it forwards from
//   the internet is refused. A production start refuses this mode (config.ts, productionRefusals).
// These routes are never rate limited nor shed (a scrape must see an overload), so the token
// check is a hash and a comparison: no database.
import { createHash, timingSafeEqual } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.ts';

const forwardedHeaders = ['x-forwarded-for', 'forwarded', 'x-real-ip'];

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function isLoopback(address: string | undefined): boolean {
  return address !== undefined && ipaddr.isValid(address) && ipaddr.process(address).range() === 'loopback';
}

/** Route config of a metrics route: public as far as sessions go, with its own credential. */
export const metricsRouteConfig = { access: 'public', ownCredential: true, rateLimit: false } as const;

/** An onRequest hook for the metrics routes: answers 401 (token set) or 403 (unset, not loopback) problem+json. */
export function metricsAccess(
  token: string | undefined,
): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
  const expected = token === undefined ? undefined : digest(token);
  return async (request, reply) => {
    if (expected) {
      const sent = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '')?.[1];
      if (sent !== undefined && timingSafeEqual(digest(sent), expected)) return;
      reply.header('www-authenticate', 'Bearer realm="metrics"');
      throw new AppError('unauthenticated', 'Metrics need the METRICS_TOKEN as a bearer token');
    }
    if (
      isLoopback(request.socket.remoteAddress) &&
      !forwardedHeaders.some((name) => request.headers[name] !== undefined)
    )
      return;
    throw new AppError(
      'forbidden',
      'Without METRICS_TOKEN, metrics answer only on loopback; set METRICS_TOKEN to scrape from elsewhere',
    );
  };
}
