import { Type, type Static } from 'typebox';
import { endpoint } from '../../platform/endpoint.ts';
import { IdParams, Page, PageQuery, Timestamp } from '../../platform/schemas.ts';

const tags = ['messaging'] as const;
const anyone = ['customer', 'staff', 'admin'] as const;

export const limits = { bodyChars: 10_000, subjectChars: 200 } as const;

// Plain text, any characters but NUL (which PostgreSQL text cannot hold). Counted in characters
// (code points), as PostgreSQL's char_length counts them.
const MessageBody = Type.String({
  minLength: 1,
  maxLength: limits.bodyChars,
  pattern: '^[^\\u0000]*$',
  description: `Plain text, 1 to ${limits.bodyChars} characters, not only whitespace. Stored and returned exactly as written; never interpreted as HTML.`,
});

const Subject = Type.String({
  minLength: 1,
  maxLength: limits.subjectChars,
  pattern: '^[^\\u0000-\\u001f\\u007f]*$',
  description: `1 to ${limits.subjectChars} characters on one line`,
});

export const MessageSchema = Type.Object(
  {
    id: Type.String(),
    conversationId: Type.String(),
    authorId: Type.String(),
    fromStaff: Type.Boolean({
      description: 'Written by staff (or an admin) for the store, rather than by the customer',
    }),
    body: Type.String(),
    createdAt: Timestamp,
  },
  { title: 'Message' },
);
export type Message = Static<typeof MessageSchema>;

export const ConversationSchema = Type.Object(
  {
    id: Type.String(),
    subject: Type.String(),
    customerId: Type.String(),
    orderId: Type.Union([Type.String(), Type.Null()]),
    createdAt: Timestamp,
    lastMessageAt: Timestamp,
    lastMessage: Type.Union([MessageSchema, Type.Null()]),
    unreadCount: Type.Integer({ minimum: 0, description: 'Messages by others that the caller has not marked read' }),
  },
  { title: 'Conversation' },
);
export type Conversation = Static<typeof ConversationSchema>;

const ReadState = Type.Object({
  conversationId: Type.String(),
  lastReadMessageId: Type.Union([Type.String(), Type.Null()]),
  unreadCount: Type.Integer({ minimum: 0 }),
});

export const EmailSchema = Type.Object(
  {
    id: Type.String(),
    eventId: Type.Union([Type.String(), Type.Null()], {
      description: 'The event the mail is about; null for account mail (password reset, email verification)',
    }),
    kind: Type.String({
      description: 'order_confirmation, payment_failed, new_message, password_reset or email_verification',
    }),
    to: Type.String(),
    subject: Type.String(),
    text: Type.String(),
    html: Type.String(),
    createdAt: Timestamp,
    sentAt: Type.Union([Timestamp, Type.Null()]),
  },
  { title: 'Email' },
);

const rateNote =
  'Posting is rate limited per user (MESSAGE_RATE_LIMIT per MESSAGE_RATE_WINDOW_SECONDS, 30 per 60 s by default): beyond it, 429 rate_limited with Retry-After.';

export const openConversation = endpoint({
  operationId: 'openConversation',
  errors: ['not_found'],
  example: { body: { subject: 'Where is my parcel?', body: 'I ordered on Monday.' } },
  method: 'POST',
  url: '/v1/conversations',
  access: ['customer'],
  tags,
  idempotencyKey: 'optional',
  summary: 'Open a conversation with the store, with its first message',
  description: [
    "Optionally about one of the caller's own orders; any other order id answers 404.",
    'Staff see and answer every conversation; a customer sees only their own.',
    rateNote,
  ].join('\n\n'),
  body: Type.Object(
    {
      subject: Subject,
      orderId: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
      body: MessageBody,
    },
    { additionalProperties: false },
  ),
  response: { 201: ConversationSchema },
});

export const listConversations = endpoint({
  operationId: 'listConversations',
  errors: [],
  method: 'GET',
  url: '/v1/conversations',
  access: anyone,
  tags,
  summary: 'Conversations, newest first: a customer sees their own, staff see all',
  description: [
    "Each carries the caller's own unread count and the last message.",
    'With `unread=true`, only those with messages by others that the caller has not marked read (an inbox lists these first, then the rest).',
  ].join('\n\n'),
  querystring: Type.Object(
    {
      ...PageQuery.properties,
      unread: Type.Optional(Type.Boolean({ description: 'Only conversations with messages the caller has not read' })),
      customerId: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 64,
          description: "Staff: only this customer's conversations (a customer always sees only their own)",
        }),
      ),
    },
    { additionalProperties: false },
  ),
  response: { 200: Page(ConversationSchema) },
});

export const getConversation = endpoint({
  operationId: 'getConversation',
  errors: [],
  example: { params: { id: 'cnv_01m8hpnn5c8cb1zbx5pmvq1m8x' } },
  method: 'GET',
  url: '/v1/conversations/:id',
  access: anyone,
  tags,
  summary: "One conversation; another customer's is 404, exactly like one that does not exist",
  params: IdParams,
  response: { 200: ConversationSchema },
});

export const listMessages = endpoint({
  operationId: 'listMessages',
  errors: [],
  example: { params: { id: 'cnv_01m8hpnn5c8cb1zbx5pmvq1m8x' } },
  method: 'GET',
  url: '/v1/conversations/:id/messages',
  access: anyone,
  tags,
  summary: 'The messages of a conversation, oldest first',
  params: IdParams,
  querystring: PageQuery,
  response: { 200: Page(MessageSchema) },
});

export const postMessage = endpoint({
  operationId: 'postMessage',
  errors: [],
  example: { params: { id: 'cnv_01m8hpnn5c8cb1zbx5pmvq1m8x' }, body: { body: 'It ships today.' } },
  method: 'POST',
  url: '/v1/conversations/:id/messages',
  access: anyone,
  tags,
  idempotencyKey: 'optional',
  summary: 'Post a message (the customer of the conversation, or staff)',
  description: [
    "Publishes message.created to the customer's and every staff member's event stream (and to webhooks); a participant with no live stream open is told by email.",
    'Posting also marks the conversation read for the author.',
    'With an Idempotency-Key, a retried send never posts twice.',
    rateNote,
  ].join('\n\n'),
  params: IdParams,
  body: Type.Object({ body: MessageBody }, { additionalProperties: false }),
  response: { 201: MessageSchema },
});

export const markRead = endpoint({
  operationId: 'markConversationRead',
  errors: [],
  example: { params: { id: 'cnv_01m8hpnn5c8cb1zbx5pmvq1m8x' }, body: {} },
  method: 'POST',
  url: '/v1/conversations/:id/read',
  access: anyone,
  tags,
  idempotencyKey: 'optional',
  summary: 'Mark the conversation read for the caller, up to a message or to the latest',
  description:
    'Read state is per participant: each staff member has their own. It never moves backwards. The body may be left out (everything read).',
  params: IdParams,
  body: Type.Object(
    {
      messageId: Type.Optional(
        Type.String({ minLength: 1, maxLength: 64, description: 'The last message read (default: the latest)' }),
      ),
    },
    { additionalProperties: false },
  ),
  response: { 200: ReadState },
});

export const eventStream = endpoint({
  operationId: 'eventStream',
  errors: [],
  method: 'GET',
  url: '/v1/events',
  access: anyone,
  tags,
  summary: 'Live events for the signed-in user, as Server-Sent Events (text/event-stream)',
  description: [
    "Carries the status changes of the caller's orders (order.paid, order.payment_failed, order.cancelled, order.fulfilled, and order.created) and message.created for their conversations; staff and admins receive message.created of every conversation.",
    'Each frame is `id: <event id>`, `event: <type>`, `data: {"id","type","createdAt","data"}`. Every event at least once.',
    'Reconnecting with the Last-Event-ID header (EventSource sends it by itself) or ?lastEventId= replays what was missed, for events up to EVENT_STREAM_RETENTION_HOURS (24) old. Each connection starts with `event: ready`, data `{ resumed, replayed }`: resumed is false when a Last-Event-ID was given but could not be honoured (refetch through the API).',
    'A `: ping` comment comes every EVENT_STREAM_HEARTBEAT_SECONDS (15). A client that does not read is disconnected rather than buffered for; it resumes with Last-Event-ID.',
    'Authenticate with Authorization: Bearer, or with the session cookie (EventSource cannot set headers).',
    'A user may hold EVENT_STREAM_MAX_PER_USER (10) streams open at once on one server, and a server EVENT_STREAM_MAX_PER_PROCESS (500); past either, 429 rate_limited with Retry-After. HEAD answers the headers and ends.',
  ].join('\n\n'),
  querystring: Type.Object(
    {
      lastEventId: Type.Optional(Type.String({ maxLength: 64, description: 'Instead of the Last-Event-ID header' })),
    },
    { additionalProperties: false },
  ),
  produces: 'text/event-stream',
  response: {
    200: Type.String({
      description: 'Server-Sent Events: `id:`, `event:` and `data:` lines, frames separated by a blank line',
    }),
  },
});

export const listMailbox = endpoint({
  operationId: 'listMailbox',
  errors: [],
  // returnsSecret: Cache-Control no-store, for it holds other people's mail.
  method: 'GET',
  url: '/v1/dev/mailbox',
  access: ['admin'],
  tags,
  returnsSecret: true,
  summary: 'The dev mailbox: the emails kept here instead of sent, while SMTP_URL is not set; newest first',
  description: [
    'For development only: this route exists only while DEV_MAILBOX is on (the default outside production; off, and refused, under NODE_ENV=production). Admins only; answered with Cache-Control: no-store.',
    'Password reset and email verification mails are shown without their token (a placeholder stands where it would be, and no token is made): only the recipient may ever read one. To receive them with their token in development, run a local mail catcher and set SMTP_URL to it.',
  ].join('\n\n'),
  querystring: PageQuery,
  response: { 200: Page(EmailSchema) },
});
