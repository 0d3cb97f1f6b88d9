// Email notifications, sent by jobs of the durable queue:
// - order.paid: an order confirmation to the customer; order.payment_failed: a notice to them;
// - message.created: a notice to each participant other than the author who has no live event
//   stream open (and has not read the message already). The participants are the conversation's
//   customer and the staff who have written in it; a conversation that no staff member has
//   answered yet reaches staff through their event streams and the unread counts, not by email.
//
// A message's job is enqueued in the transaction that publishes its event (requestEventEmails), so
// it exists exactly when the event does. Order events are not pushed to messaging: it reads them
// from the outbox as every other reader does (readOrderEventEmails: a durable position, the one row
// of email_outbox_cursor, platform/outbox.ts), and enqueues an event's job in the transaction that
// moves the position past it, so a job exists for every order event that mails, once the reader has
// passed it. A job may be enqueued twice (a position moved back) or run more than once; exactly one
// email per (event, recipient, kind) comes out of it all the same:
// 0. the job's key is its event id: a job enqueued again while the first is kept is not inserted;
// 1. each email is first recorded in `emails`, whose unique (event_id, recipient_id, kind) makes a
//    second run record nothing new;
// 2. an email is sent only by the worker that claimed it (a conditional UPDATE, with a lease in
//    case that worker dies), and marked sent afterwards. Into the dev mailbox, claim and delivery
//    are one statement. A run that finds an email claimed by another worker fails, so the job is
//    retried and completes only once every email of its event is sent; an SMTP failure releases
//    the claim and fails the job too: retried with backoff, nothing lost.
// The one gap SMTP leaves: a worker that dies after the server accepted a message and before it
// was marked sent sends it again when its claim expires. The Message-ID is the email's id, the
// same on both copies, so a receiving system can tell.
import type { Db, Queryable, Tx } from '../../platform/db.ts';
import { findEvents, type PublishedEvent } from '../../platform/events.ts';
import { hasLiveStream } from '../../platform/event-stream.ts';
import { newId } from '../../platform/ids.ts';
import { eventsAfterSql, followOutbox, readFromPosition } from '../../platform/outbox.ts';
import { enqueue, enqueueMany, workInBatches, type Queue, type QueueSpec } from '../../platform/queue.ts';
import { findUserById, findUsersByIds } from '../accounts/repo.ts';
import { createMailer, smtpTimeoutMs, type Mailer, type MailerConfig } from './mailer.ts';
import * as repo from './repo.ts';
import { newMessage, orderConfirmation, paymentFailed, type OrderData, type RenderedEmail } from './templates.ts';
import type { Message } from './schemas.ts';

export const emailQueue = 'notifications.email';

// 15 retries from 2 s doubling (pg-boss jitters each wait between d * 2^(n-1) and d * 2^n): the
// last attempt comes 18 to 36 hours after the first, so an SMTP outage of most of a day is ridden
// out; after that the job waits in the dead-letter queue (engine-room jobs list / retry).
export const messagingQueues: QueueSpec[] = [
  { name: emailQueue, retryLimit: 15, retryDelaySeconds: 2, leaseSeconds: Math.ceil(smtpTimeoutMs / 1000) * 3 + 60 },
];

/** How long a worker holds an email it is sending before another may take it over. */
const claimSeconds = Math.ceil(smtpTimeoutMs / 1000) * 3 + 30;

export type EmailKind = 'order_confirmation' | 'payment_failed' | 'new_message';

export interface EmailJob {
  eventId: string;
}

/** The order events that mail their customer: a confirmation when paid, a notice when payment fails. */
const orderEventsThatMail = ['order.paid', 'order.payment_failed'] as const;

/** Enqueues the emails of an event (a message), in the transaction that publishes it. */
export async function requestEventEmails(tx: Tx, eventId: string): Promise<void> {
  await enqueue(tx, emailQueue, { eventId } satisfies EmailJob, { dedupeKey: eventId });
}

/** Events one reader transaction reads at most. */
export const emailReaderBatchSize = 200;

/**
 * Reads up to `limit` events after the email reader's position and below the horizon, enqueues the
 * email job of each order event that mails (keyed by the event id, joining the trace that
 * published it), and moves the position past them, in one transaction. Answers how many events it
 * read, of every type (0: none waits, or another process holds the position and does the work).
 */
export async function readOrderEventEmails(
  db: Db,
  limit: number = emailReaderBatchSize,
): Promise<{ events: number; jobs: number }> {
  const read = await readFromPosition(db, 'email_outbox_cursor', async (tx, from) => {
    // tx as text outside the batch, so that the batch is ordered by the xid8 itself.
    const rows = await tx.query<{ tx: string; id: string; type: string; traceparent: string | null }>(
      `WITH batch AS (${eventsAfterSql('tx, id, type, traceparent', { tx: '$1', id: '$2', limit: '$3' })})
       SELECT tx::text AS tx, id, type, traceparent FROM batch ORDER BY batch.tx, batch.id`,
      [from.tx, from.id, limit],
    );
    const mailing = rows.filter((e) => (orderEventsThatMail as readonly string[]).includes(e.type));
    await enqueueMany(
      tx,
      emailQueue,
      mailing.map((e) => ({
        data: { eventId: e.id } satisfies EmailJob,
        dedupeKey: e.id,
        traceparent: e.traceparent ?? undefined,
      })),
    );
    const last = rows.at(-1);
    return {
      events: rows.length,
      last: last ? { tx: last.tx, id: last.id } : null,
      result: { events: rows.length, jobs: mailing.length },
    };
  });
  return read ?? { events: 0, jobs: 0 };
}

interface PlannedEmail {
  recipientId: string;
  kind: EmailKind;
  to: string;
  email: RenderedEmail;
}

export interface MessageEventData {
  message: Message;
  conversation: { id: string; subject: string; customerId: string; orderId: string | null };
}

/** The emails of order events (a confirmation, a failed payment), their customers read in one query. */
async function planOrderEmails(
  db: Queryable,
  events: PublishedEvent[],
): Promise<(PlannedEmail & { eventId: string })[]> {
  if (events.length === 0) return [];
  const orderOf = (event: PublishedEvent) => (event.data as { order: OrderData & { customerId: string } }).order;
  const customers = new Map(
    (await findUsersByIds(db, [...new Set(events.map((e) => orderOf(e).customerId))])).map((u) => [u.id, u]),
  );
  return events.flatMap((event) => {
    const order = orderOf(event);
    const customer = customers.get(order.customerId);
    if (!customer) return []; // placed with an API key: nobody to write to
    const paid = event.type === 'order.paid';
    return [
      {
        eventId: event.id,
        recipientId: customer.id,
        kind: paid ? ('order_confirmation' as const) : ('payment_failed' as const),
        to: customer.email,
        email: (paid ? orderConfirmation : paymentFailed)({ name: customer.name, order }),
      },
    ];
  });
}

async function planMessageEmails(
  db: Queryable,
  event: PublishedEvent,
  heartbeatSeconds: number,
): Promise<PlannedEmail[]> {
  const { message, conversation } = event.data as MessageEventData;
  const recipients = new Set<string>([conversation.customerId, ...(await repo.staffParticipants(db, conversation.id))]);
  recipients.delete(message.authorId);
  const author = message.fromStaff
    ? 'The Engine Room team'
    : ((await findUserById(db, message.authorId))?.name ?? 'The customer');
  const planned: PlannedEmail[] = [];
  for (const recipientId of recipients) {
    // Watching live, or read it already: the stream told them; an email would only repeat it.
    if (await hasLiveStream(db, recipientId, heartbeatSeconds)) continue;
    if (await repo.hasRead(db, conversation.id, recipientId, message.id)) continue;
    const user = await findUserById(db, recipientId);
    if (!user) continue;
    planned.push({
      recipientId,
      kind: 'new_message',
      to: user.email,
      email: newMessage({
        name: user.name,
        author,
        subject: conversation.subject,
        body: message.body,
        conversationId: conversation.id,
      }),
    });
  }
  return planned;
}

type Delivery = 'sent' | 'busy';

/** Over SMTP: claim, send, mark sent (the dev mailbox is delivered in bulk by sendEventsEmails). */
export async function deliverBySmtp(
  db: Db,
  mailer: Extract<Mailer, { kind: 'smtp' }>,
  email: repo.EmailRow,
): Promise<Delivery> {
  const claimed = await repo.claimEmail(db, email.id, claimSeconds);
  if (!claimed) return (await repo.emailStatus(db, email.id)) === 'sent' ? 'sent' : 'busy';
  try {
    await mailer.send({
      messageId: `<${claimed.id}@engine-room.local>`,
      to: claimed.to_address,
      subject: claimed.subject,
      text: claimed.text_body,
      html: claimed.html_body,
    });
  } catch (err) {
    await repo.releaseEmail(db, claimed.id, (err as Error).message ?? String(err));
    throw err;
  }
  await repo.markEmailSent(db, claimed.id);
  return 'sent';
}

export interface EmailOptions {
  /** A user whose stream was seen within two heartbeats is watching (no email about a new message). */
  heartbeatSeconds: number;
  /** SMTP conversations one batch holds at once. */
  smtpConcurrency: number;
}

/** The job for one event: records its emails (once) and sends those not sent yet. Idempotent. */
export async function sendEventEmails(db: Db, mailer: Mailer, options: EmailOptions, eventId: string): Promise<void> {
  const failure = (await sendEventsEmails(db, mailer, options, [eventId])).get(eventId);
  if (failure) throw failure;
}

/**
 * The jobs of several events (worked in a batch): their emails recorded in one statement and, into
 * the dev mailbox, delivered in one; over SMTP each email is claimed, sent and marked on its own.
 * Answers, per event whose emails are not all sent, why (its job is retried). Idempotent.
 */
export async function sendEventsEmails(
  db: Db,
  mailer: Mailer,
  options: EmailOptions,
  eventIds: string[],
): Promise<Map<string, Error>> {
  const events = await findEvents(db, eventIds);
  const planned = await planOrderEmails(
    db,
    events.filter((e) => (orderEventsThatMail as readonly string[]).includes(e.type)),
  );
  for (const event of events.filter((e) => e.type === 'message.created')) {
    planned.push(
      ...(await planMessageEmails(db, event, options.heartbeatSeconds)).map((p) => ({ ...p, eventId: event.id })),
    );
  }
  await repo.insertEmails(
    db,
    planned.map((p) => ({
      id: newId('eml'),
      eventId: p.eventId,
      recipientId: p.recipientId,
      kind: p.kind,
      to: p.to,
      ...p.email,
    })),
  );

  const failures = new Map<string, string[]>();
  const fail = (email: repo.EmailRow, why: string) =>
    failures.set(email.event_id!, [...(failures.get(email.event_id!) ?? []), why]);
  const unsent = await repo.unsentEmailsOfEvents(
    db,
    events.map((e) => e.id),
  );
  // Neither SMTP nor the dev mailbox (kind 'none'): recorded, not delivered, and not retried (the start warned).
  if (mailer.kind === 'mailbox') {
    const delivered = await repo.deliverAllToMailbox(
      db,
      unsent.map((e) => e.id),
    );
    for (const email of unsent.filter((e) => !delivered.has(e.id))) {
      if ((await repo.emailStatus(db, email.id)) !== 'sent') fail(email, `${email.id} is being sent by another worker`);
    }
  } else if (mailer.kind === 'smtp') {
    // A few SMTP conversations at once, as many as the queue's concurrency allows.
    for (let i = 0; i < unsent.length; i += options.smtpConcurrency) {
      await Promise.all(
        unsent.slice(i, i + options.smtpConcurrency).map(async (email) => {
          try {
            if ((await deliverBySmtp(db, mailer, email)) === 'busy')
              fail(email, `${email.id} is being sent by another worker`);
          } catch (err) {
            fail(email, `${email.id} to ${email.to_address}: ${(err as Error).message}`);
          }
        }),
      );
    }
  }
  return new Map(
    [...failures].map(([eventId, why]) => [eventId, new Error(`emails of ${eventId} not sent yet: ${why.join('; ')}`)]),
  );
}

export interface MessagingWorkerConfig extends MailerConfig {
  eventStreamHeartbeatSeconds: number;
  workerConcurrency: number;
}

// The email reader's loop, for queue.wake(); it is not a pg-boss queue.
const readerLoop = 'notifications.read-outbox';

/**
 * Runs the email reader of order events (followOutbox: on the queue's poll, and at once after a
 * local publish) and works the email jobs in this process. The queue (messagingQueues) must be
 * declared.
 */
export function registerMessagingWorkers(queue: Queue, db: Db, config: MessagingWorkerConfig): void {
  const mailer = createMailer(config);
  const options: EmailOptions = {
    heartbeatSeconds: config.eventStreamHeartbeatSeconds,
    smtpConcurrency: config.workerConcurrency,
  };
  followOutbox(queue, readerLoop, async () => {
    const { events, jobs } = await readOrderEventEmails(db, emailReaderBatchSize);
    if (jobs > 0) queue.wake(emailQueue);
    return events === emailReaderBatchSize;
  });
  // In batches: the emails of many events (an order confirmation per paid order) are recorded, and
  // into the dev mailbox delivered, with one statement each.
  workInBatches<EmailJob>(
    queue,
    emailQueue,
    async (jobs) => {
      const failed = await sendEventsEmails(db, mailer, options, [...new Set(jobs.map((job) => job.data.eventId))]);
      return new Map(
        jobs.flatMap((job) => {
          const err = failed.get(job.data.eventId);
          return err ? [[job.id, err] as const] : [];
        }),
      );
    },
    { batchSize: Math.max(32, config.workerConcurrency), concurrency: 2 },
  );
}
