import type { FastifyInstance, FastifyReply } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Db } from '../../platform/db.ts';
import { routeOf } from '../../platform/endpoint.ts';
import { principalOf } from '../../platform/auth.ts';
import { idempotent } from '../../platform/idempotency.ts';
import { decodeCursor, pageOf } from '../../platform/pagination.ts';
import { audienceKeysOf, createEventHub, listenerFor } from '../../platform/event-stream.ts';
import * as s from './schemas.ts';
import * as messaging from './service.ts';
import { listMailbox, type EmailRow } from './repo.ts';

export interface MessagingDeps {
  db: Db;
  /** Who placed an order: how a conversation's cited order is checked (the orders module's, handed in by app.ts). */
  customerOfOrder: messaging.CustomerOfOrder;
  config: messaging.MessagingConfig & {
    /** DEV_MAILBOX: whether GET /v1/dev/mailbox exists at all. */
    devMailbox: boolean;
    databaseUrl: string | undefined;
    eventStreamHeartbeatSeconds: number;
    eventStreamRetentionHours: number;
    eventStreamMaxPerProcess: number;
    eventStreamMaxPerUser: number;
  };
}

// Anything shaped like one of our secrets: account tokens (err_, erv_), sessions (ers_), API keys (erk_).
const secretShaped = /\ber[rvsk]_[A-Za-z0-9_-]{16,}/g;

/**
 * A mail of the dev mailbox, with anything shaped like a token blanked. Account mail is written
 * into the mailbox without its token (account-mail.ts); this also covers rows written before that
 * rule, or written for SMTP and delivered into the mailbox after a restart without SMTP_URL.
 */
function emailView(e: EmailRow) {
  const blank = (text: string) => text.replace(secretShaped, '[token withheld]');
  return {
    id: e.id,
    eventId: e.event_id,
    kind: e.kind,
    to: e.to_address,
    subject: blank(e.subject),
    text: blank(e.text_body),
    html: blank(e.html_body),
    createdAt: e.created_at.toISOString(),
    sentAt: e.sent_at ? e.sent_at.toISOString() : null,
  };
}

/** The headers Fastify would have sent (request id, security headers, CORS), for a hijacked reply. */
function headersOf(reply: FastifyReply): Record<string, string | number | string[]> {
  const out: Record<string, string | number | string[]> = {};
  for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) out[name] = value;
  return out;
}

const streamHeaders = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  // nginx and friends: pass each frame on at once.
  'x-accel-buffering': 'no',
};

export function messagingRoutes(app: FastifyInstance, { db, config, customerOfOrder }: MessagingDeps): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  // One hub per process: one listening connection and one outbox read per wake-up, for all streams.
  const hub = createEventHub(db, {
    heartbeatSeconds: config.eventStreamHeartbeatSeconds,
    retentionHours: config.eventStreamRetentionHours,
    listen: listenerFor(db, config.databaseUrl),
    maxStreams: config.eventStreamMaxPerProcess,
    maxStreamsPerUser: config.eventStreamMaxPerUser,
    log: app.log,
  });
  // Streams never finish by themselves: end them before the server waits for open requests, so
  // that close is not held up (their clients reconnect, to another process, with Last-Event-ID).
  app.addHook('preClose', async () => {
    hub.endAll();
  });
  app.addHook('onClose', async () => {
    await hub.close();
  });

  r.route({
    ...routeOf(s.openConversation),
    handler: async (request, reply) => {
      const principal = principalOf(request);
      await messaging.enforceSendRate(db, principal, config);
      return idempotent(db, request, reply, { required: false }, async (tx) => ({
        status: 201,
        body: await messaging.openConversation(tx, principal, request.body, customerOfOrder),
      }));
    },
  });

  r.route({
    ...routeOf(s.listConversations),
    handler: async (request) => {
      const { limit, cursor, unread, customerId } = request.query;
      return messaging.listConversations(db, principalOf(request), {
        after: decodeCursor(cursor),
        limit,
        unreadOnly: unread === true,
        customerId: customerId ?? null,
      });
    },
  });

  r.route({
    ...routeOf(s.getConversation),
    handler: async (request) => messaging.getConversation(db, principalOf(request), request.params.id),
  });

  r.route({
    ...routeOf(s.listMessages),
    handler: async (request) => {
      const { limit, cursor } = request.query;
      return messaging.listMessages(db, principalOf(request), request.params.id, {
        after: decodeCursor(cursor),
        limit,
      });
    },
  });

  r.route({
    ...routeOf(s.postMessage),
    handler: async (request, reply) => {
      const principal = principalOf(request);
      await messaging.enforceSendRate(db, principal, config);
      return idempotent(db, request, reply, { required: false }, async (tx) => ({
        status: 201,
        body: await messaging.postMessage(tx, principal, request.params.id, request.body.body),
      }));
    },
  });

  r.route({
    ...routeOf(s.markRead),
    // The body is optional: a bare POST marks everything read.
    preValidation: async (request) => {
      request.body ??= {};
    },
    handler: (request, reply) =>
      idempotent(db, request, reply, { required: false }, async (tx) => ({
        status: 200,
        body: await messaging.markRead(tx, principalOf(request), request.params.id, request.body.messageId),
      })),
  });

  r.route({
    ...routeOf(s.eventStream),
    handler: async (request, reply) => {
      const principal = principalOf(request);
      const header = request.headers['last-event-id'];
      const lastEventId =
        (typeof header === 'string' && header.trim() !== '' ? header.trim() : undefined) ?? request.query.lastEventId;
      // Past the user's or the process's limit this throws 429, while the reply is still Fastify's.
      const admission = hub.admit({ userId: principal.userId, keys: audienceKeysOf(principal) });
      // HEAD (Fastify answers it with this handler): what GET would answer, without a stream.
      if (request.method === 'HEAD') {
        admission.release();
        return reply.headers(streamHeaders).send('');
      }
      reply.hijack();
      reply.raw.writeHead(200, { ...headersOf(reply), ...streamHeaders, connection: 'keep-alive' });
      request.raw.socket?.setNoDelay(true);
      const openedAt = Date.now();
      reply.raw.once('close', () => request.log.info({ streamedMs: Date.now() - openedAt }, 'event stream closed'));
      await admission.open(reply.raw, lastEventId);
    },
  });

  // Development only: the route does not exist unless DEV_MAILBOX is on (off in production).
  if (config.devMailbox)
    r.route({
      ...routeOf(s.listMailbox),
      handler: async (request) => {
        const { limit, cursor } = request.query;
        const page = pageOf(await listMailbox(db, decodeCursor(cursor), limit), limit, (e) => e.id);
        return { data: page.data.map(emailView), nextCursor: page.nextCursor };
      },
    });
}
