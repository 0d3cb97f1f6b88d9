// SQL of messaging: conversations, messages, read positions, and the notification emails.
import type { Queryable, Tx } from '../../platform/db.ts';
import type { ConversationsRow, EmailsRow, MessagesRow, Refine } from '../../db/rows.ts';

export type ConversationRow = ConversationsRow;
export type MessageRow = MessagesRow;

/** A conversation with what the list shows: its last message and the reader's unread count. */
export interface ConversationListRow extends ConversationRow {
  unread: number;
  m_id: MessagesRow['id'] | null;
  m_author_id: MessagesRow['author_id'] | null;
  m_author_role: MessagesRow['author_role'] | null;
  m_body: MessagesRow['body'] | null;
  m_created_at: MessagesRow['created_at'] | null;
}

export async function insertConversation(
  tx: Tx,
  c: { id: string; customerId: string; orderId: string | null; subject: string },
): Promise<ConversationRow> {
  const [row] = await tx.query<ConversationRow>(
    'INSERT INTO conversations (id, customer_id, order_id, subject) VALUES ($1, $2, $3, $4) RETURNING *',
    [c.id, c.customerId, c.orderId, c.subject],
  );
  return row!;
}

/** The conversation, locked until the transaction ends: messages of one conversation are written one at a time. */
export async function lockConversation(tx: Tx, id: string): Promise<ConversationRow | undefined> {
  const [row] = await tx.query<ConversationRow>('SELECT * FROM conversations WHERE id = $1 FOR UPDATE', [id]);
  return row;
}

export async function findConversation(db: Queryable, id: string): Promise<ConversationRow | undefined> {
  const [row] = await db.query<ConversationRow>('SELECT * FROM conversations WHERE id = $1', [id]);
  return row;
}

const listColumns = `c.*,
  (SELECT count(*)::int FROM messages u
    WHERE u.conversation_id = c.id AND u.author_id <> $1 AND u.id > COALESCE(r.last_read_message_id, '')) AS unread,
  m.id AS m_id, m.author_id AS m_author_id, m.author_role AS m_author_role, m.body AS m_body, m.created_at AS m_created_at`;

/**
 * Conversations newest first, each with `reader`'s unread count; customerId null: all of them.
 * unreadOnly: only those with a message by someone else after the reader's read position (one
 * probe of messages_conversation_id per conversation passed, newest first, until the page is full).
 */
export function listConversations(
  db: Queryable,
  opts: { reader: string; customerId: string | null; after: string | null; limit: number; unreadOnly: boolean },
): Promise<ConversationListRow[]> {
  return db.query<ConversationListRow>(
    `SELECT ${listColumns}
       FROM conversations c
       LEFT JOIN conversation_reads r ON r.conversation_id = c.id AND r.user_id = $1
       LEFT JOIN messages m ON m.id = c.last_message_id
      WHERE ($2::text IS NULL OR c.customer_id = $2) AND ($3::text IS NULL OR c.id < $3)
        AND (NOT $5::boolean OR EXISTS (
          SELECT 1 FROM messages u WHERE u.conversation_id = c.id AND u.author_id <> $1 AND u.id > COALESCE(r.last_read_message_id, '')))
      ORDER BY c.id DESC LIMIT $4`,
    [opts.reader, opts.customerId, opts.after, opts.limit + 1, opts.unreadOnly],
  );
}

export async function conversationForReader(
  db: Queryable,
  id: string,
  reader: string,
): Promise<ConversationListRow | undefined> {
  const [row] = await db.query<ConversationListRow>(
    `SELECT ${listColumns}
       FROM conversations c
       LEFT JOIN conversation_reads r ON r.conversation_id = c.id AND r.user_id = $1
       LEFT JOIN messages m ON m.id = c.last_message_id
      WHERE c.id = $2`,
    [reader, id],
  );
  return row;
}

export async function insertMessage(
  tx: Tx,
  m: { id: string; conversationId: string; authorId: string; authorRole: string; body: string },
): Promise<MessageRow> {
  const [row] = await tx.query<MessageRow>(
    'INSERT INTO messages (id, conversation_id, author_id, author_role, body) VALUES ($1, $2, $3, $4, $5) RETURNING *',
    [m.id, m.conversationId, m.authorId, m.authorRole, m.body],
  );
  await tx.query('UPDATE conversations SET last_message_id = $2, last_message_at = $3 WHERE id = $1', [
    m.conversationId,
    row!.id,
    row!.created_at,
  ]);
  return row!;
}

/** Oldest first, after the message id `after`. */
export function listMessages(
  db: Queryable,
  conversationId: string,
  after: string | null,
  limit: number,
): Promise<MessageRow[]> {
  return db.query<MessageRow>(
    'SELECT * FROM messages WHERE conversation_id = $1 AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3',
    [conversationId, after, limit + 1],
  );
}

export async function findMessage(db: Queryable, conversationId: string, id: string): Promise<MessageRow | undefined> {
  const [row] = await db.query<MessageRow>('SELECT * FROM messages WHERE conversation_id = $1 AND id = $2', [
    conversationId,
    id,
  ]);
  return row;
}

/** Moves the reader's position forward to messageId (never back); answers the position now. */
export async function markReadUpTo(
  db: Queryable,
  conversationId: string,
  userId: string,
  messageId: string,
): Promise<string> {
  const [row] = await db.query<{ last_read_message_id: string }>(
    `INSERT INTO conversation_reads (conversation_id, user_id, last_read_message_id) VALUES ($1, $2, $3)
     ON CONFLICT (conversation_id, user_id) DO UPDATE
       SET last_read_message_id = GREATEST(conversation_reads.last_read_message_id, excluded.last_read_message_id), updated_at = now()
     RETURNING last_read_message_id`,
    [conversationId, userId, messageId],
  );
  return row!.last_read_message_id;
}

export async function readState(
  db: Queryable,
  conversationId: string,
  userId: string,
): Promise<{ lastRead: string | null; unread: number }> {
  const [row] = await db.query<{ last_read: string | null; unread: number }>(
    `SELECT r.last_read_message_id AS last_read,
            (SELECT count(*)::int FROM messages u
              WHERE u.conversation_id = $1 AND u.author_id <> $2 AND u.id > COALESCE(r.last_read_message_id, '')) AS unread
       FROM (SELECT 1) one LEFT JOIN conversation_reads r ON r.conversation_id = $1 AND r.user_id = $2`,
    [conversationId, userId],
  );
  return { lastRead: row?.last_read ?? null, unread: row?.unread ?? 0 };
}

/** Staff who have written in the conversation: the store's side of its participants. */
export async function staffParticipants(db: Queryable, conversationId: string): Promise<string[]> {
  const rows = await db.query<{ author_id: string }>(
    "SELECT DISTINCT author_id FROM messages WHERE conversation_id = $1 AND author_role IN ('staff', 'admin')",
    [conversationId],
  );
  return rows.map((r) => r.author_id);
}

export async function hasRead(
  db: Queryable,
  conversationId: string,
  userId: string,
  messageId: string,
): Promise<boolean> {
  const [row] = await db.query(
    'SELECT 1 FROM conversation_reads WHERE conversation_id = $1 AND user_id = $2 AND last_read_message_id >= $3',
    [conversationId, userId, messageId],
  );
  return row !== undefined;
}

// ---------------------------------------------------------------------------------------------
// Emails

export type EmailRow = Refine<
  EmailsRow,
  { status: 'pending' | 'sending' | 'sent'; transport: 'smtp' | 'mailbox' | null }
>;

/** Records the email unless this (event, recipient, kind) has one already: the dedupe. */
/** Records emails (one statement); one per (event, recipient, kind): a second run records nothing. */
export async function insertEmails(
  db: Queryable,
  emails: {
    id: string;
    eventId: string;
    recipientId: string;
    kind: string;
    to: string;
    subject: string;
    text: string;
    html: string;
  }[],
): Promise<void> {
  if (emails.length === 0) return;
  const col = <K extends keyof (typeof emails)[number]>(k: K) => emails.map((e) => e[k]);
  await db.query(
    `INSERT INTO emails (id, event_id, recipient_id, kind, to_address, subject, text_body, html_body)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
     ON CONFLICT (event_id, recipient_id, kind) DO NOTHING`,
    [col('id'), col('eventId'), col('recipientId'), col('kind'), col('to'), col('subject'), col('text'), col('html')],
  );
}

export function unsentEmailsOfEvents(db: Queryable, eventIds: string[]): Promise<EmailRow[]> {
  return db.query<EmailRow>("SELECT * FROM emails WHERE event_id = ANY($1::text[]) AND status <> 'sent' ORDER BY id", [
    eventIds,
  ]);
}

/** Delivers emails into the dev mailbox (one statement); answers the ids delivered now. */
export async function deliverAllToMailbox(db: Queryable, ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const rows = await db.query<{ id: string }>(
    `UPDATE emails SET status = 'sent', transport = 'mailbox', sent_at = now(), attempts = attempts + 1, claimed_until = NULL
      WHERE id = ANY($1::text[]) AND (status = 'pending' OR (status = 'sending' AND claimed_until < now()))
      RETURNING id`,
    [ids],
  );
  return new Set(rows.map((r) => r.id));
}

/**
 * Claims the email for one sender until the lease runs out: only a pending email, or one whose
 * sender's lease ran out (it died mid-send), can be claimed, so two workers never send it at once.
 */
export async function claimEmail(db: Queryable, id: string, leaseSeconds: number): Promise<EmailRow | undefined> {
  const [row] = await db.query<EmailRow>(
    `UPDATE emails SET status = 'sending', claimed_until = now() + make_interval(secs => $2), attempts = attempts + 1
      WHERE id = $1 AND (status = 'pending' OR (status = 'sending' AND claimed_until < now()))
      RETURNING *`,
    [id, leaseSeconds],
  );
  return row;
}

export async function markEmailSent(db: Queryable, id: string): Promise<void> {
  await db.query(
    "UPDATE emails SET status = 'sent', transport = 'smtp', sent_at = now(), claimed_until = NULL, last_error = NULL WHERE id = $1 AND status = 'sending'",
    [id],
  );
}

export async function releaseEmail(db: Queryable, id: string, error: string): Promise<void> {
  await db.query(
    "UPDATE emails SET status = 'pending', claimed_until = NULL, last_error = $2 WHERE id = $1 AND status = 'sending'",
    [id, error.slice(0, 1000)],
  );
}

export async function emailStatus(db: Queryable, id: string): Promise<EmailRow['status'] | undefined> {
  const [row] = await db.query<{ status: EmailRow['status'] }>('SELECT status FROM emails WHERE id = $1', [id]);
  return row?.status;
}

export function listMailbox(db: Queryable, after: string | null, limit: number): Promise<EmailRow[]> {
  return db.query<EmailRow>(
    "SELECT * FROM emails WHERE transport = 'mailbox' AND ($1::text IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
    [after, limit + 1],
  );
}

/** The account mail a job wrote (account-mail.ts), if it wrote one already. */
export async function emailOfJob(db: Queryable, jobId: string): Promise<EmailRow | undefined> {
  const [row] = await db.query<EmailRow>('SELECT * FROM emails WHERE job_id = $1', [jobId]);
  return row;
}

export async function insertJobEmail(
  db: Queryable,
  e: {
    id: string;
    jobId: string;
    recipientId: string;
    kind: string;
    to: string;
    subject: string;
    text: string;
    html: string;
  },
): Promise<void> {
  await db.query(
    `INSERT INTO emails (id, job_id, recipient_id, kind, to_address, subject, text_body, html_body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [e.id, e.jobId, e.recipientId, e.kind, e.to, e.subject, e.text, e.html],
  );
}

/** Replaces the body of a sent mail (one that held a token) with a note. */
export async function forgetBody(db: Queryable, id: string, note: string): Promise<void> {
  await db.query("UPDATE emails SET text_body = $2, html_body = $2 WHERE id = $1 AND status = 'sent'", [id, note]);
}
