// Conversations between a customer and the store. The customer who opened one and every staff
// member may read and write in it; to anyone else it does not exist (404, the same answer as for
// an id that was never made). Messages are plain text, stored and returned exactly as written.
// Every message publishes message.created (to the customer's stream and to every staff stream,
// and to webhooks) and enqueues its email notifications, in the transaction that writes it.
import { AppError } from '../../errors.ts';
import type { Queryable, Tx } from '../../platform/db.ts';
import { staffOrAbove, type Principal } from '../../platform/auth.ts';
import { newId } from '../../platform/ids.ts';
import { publishEvent } from '../../platform/events.ts';
import { staffAudience } from '../../platform/event-stream.ts';
import { addHit } from '../../platform/rate-limit.ts';
import { pageOf } from '../../platform/pagination.ts';
import * as repo from './repo.ts';
import { requestEventEmails, type MessageEventData } from './notifications.ts';
import type { Conversation, Message } from './schemas.ts';

export interface MessagingConfig {
  messageRateLimit: number;
  messageRateWindowSeconds: number;
}

/**
 * Who placed an order (undefined: no such order). Messaging needs no more of orders than this, and
 * gets it as a function (from app.ts) rather than an import: orders import messaging's notifications.
 */
export type CustomerOfOrder = (db: Queryable, orderId: string) => Promise<string | undefined>;

function noSuchConversation(): AppError {
  return new AppError('not_found', 'No such conversation');
}

function canSee(principal: Principal, conversation: { customer_id: string }): boolean {
  return staffOrAbove(principal.role) || conversation.customer_id === principal.userId;
}

export function messageView(m: repo.MessageRow): Message {
  return {
    id: m.id,
    conversationId: m.conversation_id,
    authorId: m.author_id,
    fromStaff: m.author_role !== 'customer',
    body: m.body,
    createdAt: m.created_at.toISOString(),
  };
}

export function conversationView(c: repo.ConversationListRow): Conversation {
  return {
    id: c.id,
    subject: c.subject,
    customerId: c.customer_id,
    orderId: c.order_id,
    createdAt: c.created_at.toISOString(),
    lastMessageAt: c.last_message_at.toISOString(),
    lastMessage:
      c.m_id === null
        ? null
        : messageView({
            id: c.m_id,
            conversation_id: c.id,
            author_id: c.m_author_id!,
            author_role: c.m_author_role!,
            body: c.m_body!,
            created_at: c.m_created_at!,
          }),
    unreadCount: c.unread,
  };
}

// What a JSON schema cannot say simply: not only whitespace, and no lone UTF-16 surrogate (which
// would not survive the trip to UTF-8 and back, so the text would not come back as written).
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function checkText(value: string, path: string): void {
  if (!/\S/.test(value))
    throw new AppError('validation_failed', 'The text is empty', { errors: [{ path, message: 'must not be blank' }] });
  if (loneSurrogate.test(value))
    throw new AppError('validation_failed', 'The text is not valid Unicode', {
      errors: [{ path, message: 'contains a lone surrogate' }],
    });
}

/**
 * Counts one message against the sender's allowance in the database (so the limit holds across
 * processes) and refuses it beyond the limit. Called before the request does anything else, so a
 * refused request stores nothing, not even its idempotency key.
 */
export async function enforceSendRate(db: Queryable, principal: Principal, config: MessagingConfig): Promise<void> {
  const state = await addHit(db, `messages:${principal.userId}`, config.messageRateWindowSeconds);
  if (state && state.hits > config.messageRateLimit) {
    throw new AppError(
      'rate_limited',
      `At most ${config.messageRateLimit} messages per ${config.messageRateWindowSeconds} seconds; try again later`,
      { retryAfterSeconds: state.retryAfterSeconds },
    );
  }
}

async function addMessage(
  tx: Tx,
  conversation: repo.ConversationRow,
  principal: Principal,
  body: string,
): Promise<repo.MessageRow> {
  const row = await repo.insertMessage(tx, {
    id: newId('msg'),
    conversationId: conversation.id,
    authorId: principal.userId,
    authorRole: principal.role,
    body,
  });
  // Whoever writes has read what they answer.
  await repo.markReadUpTo(tx, conversation.id, principal.userId, row.id);
  const data: MessageEventData = {
    message: messageView(row),
    conversation: {
      id: conversation.id,
      subject: conversation.subject,
      customerId: conversation.customer_id,
      orderId: conversation.order_id,
    },
  };
  // Staff are no fixed list of users: the staff audience key reaches every staff and admin stream.
  const event = await publishEvent(tx, 'message.created', data, [conversation.customer_id, staffAudience]);
  await requestEventEmails(tx, event.id);
  return row;
}

export async function openConversation(
  tx: Tx,
  principal: Principal,
  input: { subject: string; orderId?: string; body: string },
  customerOfOrder: CustomerOfOrder,
): Promise<Conversation> {
  checkText(input.subject, '/subject');
  checkText(input.body, '/body');
  if (input.orderId !== undefined) {
    if ((await customerOfOrder(tx, input.orderId)) !== principal.userId) {
      throw new AppError('not_found', 'No such order', { errors: [{ path: '/orderId', message: 'no such order' }] });
    }
  }
  const conversation = await repo.insertConversation(tx, {
    id: newId('cnv'),
    customerId: principal.userId,
    orderId: input.orderId ?? null,
    subject: input.subject,
  });
  await addMessage(tx, conversation, principal, input.body);
  return conversationView((await repo.conversationForReader(tx, conversation.id, principal.userId))!);
}

export async function postMessage(
  tx: Tx,
  principal: Principal,
  conversationId: string,
  body: string,
): Promise<Message> {
  checkText(body, '/body');
  // Locked: the messages of one conversation are written one after the other, in id order.
  const conversation = await repo.lockConversation(tx, conversationId);
  if (!conversation || !canSee(principal, conversation)) throw noSuchConversation();
  return messageView(await addMessage(tx, conversation, principal, body));
}

export async function getConversation(db: Queryable, principal: Principal, id: string): Promise<Conversation> {
  const row = await repo.conversationForReader(db, id, principal.userId);
  if (!row || !canSee(principal, row)) throw noSuchConversation();
  return conversationView(row);
}

export async function listConversations(
  db: Queryable,
  principal: Principal,
  opts: { after: string | null; limit: number; unreadOnly: boolean; customerId?: string | null },
) {
  const rows = await repo.listConversations(db, {
    reader: principal.userId,
    customerId: staffOrAbove(principal.role) ? (opts.customerId ?? null) : principal.userId,
    after: opts.after,
    limit: opts.limit,
    unreadOnly: opts.unreadOnly,
  });
  const page = pageOf(rows, opts.limit, (r) => r.id);
  return { data: page.data.map(conversationView), nextCursor: page.nextCursor };
}

export async function listMessages(
  db: Queryable,
  principal: Principal,
  conversationId: string,
  opts: { after: string | null; limit: number },
) {
  const conversation = await repo.findConversation(db, conversationId);
  if (!conversation || !canSee(principal, conversation)) throw noSuchConversation();
  const page = pageOf(await repo.listMessages(db, conversationId, opts.after, opts.limit), opts.limit, (m) => m.id);
  return { data: page.data.map(messageView), nextCursor: page.nextCursor };
}

export async function markRead(tx: Tx, principal: Principal, conversationId: string, messageId: string | undefined) {
  const conversation = await repo.findConversation(tx, conversationId);
  if (!conversation || !canSee(principal, conversation)) throw noSuchConversation();
  let upTo = conversation.last_message_id;
  if (messageId !== undefined) {
    const message = await repo.findMessage(tx, conversationId, messageId);
    if (!message)
      throw new AppError('not_found', 'No such message in this conversation', {
        errors: [{ path: '/messageId', message: 'no such message in this conversation' }],
      });
    upTo = message.id;
  }
  if (upTo !== null) await repo.markReadUpTo(tx, conversationId, principal.userId, upTo);
  const state = await repo.readState(tx, conversationId, principal.userId);
  return { conversationId, lastReadMessageId: state.lastRead, unreadCount: state.unread };
}
