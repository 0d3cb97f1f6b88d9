// Account mail: a password reset link, an email verification link. The accounts module asks for one
// by enqueuing a job (accounts/service.ts, accountMailQueue) that carries no secret: an email address
// or a user id. This worker finds the user, makes the single-use token (only its hash is stored) and
// writes the mail in one transaction, keyed by the job's id, so a retried job writes one mail and one
// token; then it delivers the mail as every other.
//
// Only the recipient may ever read a working token, so only a real delivery (SMTP) carries one. The
// token is in the mail's body until it is sent; once sent the body is replaced by a note, so the
// emails table does not keep a working link. Into the dev mailbox, which admins read, the mail is
// written with a placeholder instead of a token, and no token is made at all: a token nobody can
// read would only be a live secret to steal (from the database, or from the mailbox before this
// rule; the mailbox's view also blanks anything shaped like a token: messaging/routes.ts). A
// developer who needs the link runs a local mail catcher and sets SMTP_URL (docs/OPERATIONS.md,
// "Mail"). With neither SMTP nor the mailbox, nothing is written: there is no one to deliver it to.
import type { Db } from '../../platform/db.ts';
import { newId } from '../../platform/ids.ts';
import { work, type Queue, type QueueSpec } from '../../platform/queue.ts';
import { accountMailQueue, issueAccountToken, tokenTtlSeconds, type AccountMailJob } from '../accounts/service.ts';
import { findUserByEmail, findUserById, type UserRow } from '../accounts/repo.ts';
import type { Mailer } from './mailer.ts';
import { deliverBySmtp } from './notifications.ts';
import * as repo from './repo.ts';
import { html, oneLine, page, type RenderedEmail } from './templates.ts';

// A few retries: a reset link that arrives a day late is no use.
export const accountMailQueues: QueueSpec[] = [
  { name: accountMailQueue, retryLimit: 5, retryDelaySeconds: 2, leaseSeconds: 150 },
];

function resetMail(name: string, token: string): RenderedEmail {
  const minutes = tokenTtlSeconds.password_reset / 60;
  return {
    subject: oneLine('Reset your password'),
    text: [
      `Hello ${name},`,
      '',
      `someone (we hope you) asked to reset the password of this account. Your reset token, valid for ${minutes} minutes and once:`,
      '',
      `  ${token}`,
      '',
      'Send it with your new password to POST /v1/auth/password-reset/confirm. Every session of the account ends when you do.',
      'If it was not you, ignore this mail: your password stays as it is.',
      '',
    ].join('\n'),
    html: page(
      'Reset your password',
      html`
<p>Hello ${name},</p>
<p>someone (we hope you) asked to reset the password of this account. Your reset token, valid for ${minutes} minutes and once:</p>
<p><code>${token}</code></p>
<p>Send it with your new password to <code>POST /v1/auth/password-reset/confirm</code>. Every session of the account ends when you do.</p>
<p>If it was not you, ignore this mail: your password stays as it is.</p>`,
    ),
  };
}

function verificationMail(name: string, token: string): RenderedEmail {
  return {
    subject: oneLine('Verify your email address'),
    text: [
      `Hello ${name},`,
      '',
      'please confirm this address by sending this token to POST /v1/auth/verify-email (valid for 7 days, once):',
      '',
      `  ${token}`,
      '',
    ].join('\n'),
    html: page(
      'Verify your email address',
      html`
<p>Hello ${name},</p>
<p>please confirm this address by sending this token to <code>POST /v1/auth/verify-email</code> (valid for 7 days, once):</p>
<p><code>${token}</code></p>`,
    ),
  };
}

const sentNote = '(This mail held a single-use token; its body is not kept once sent.)';

/** What the dev mailbox shows where a token would be. Not token-shaped: nothing in it works anywhere. */
const tokenWithheld =
  '[token withheld: the dev mailbox never shows account tokens; to get this mail with its token, set SMTP_URL to a local mail catcher]';

/** One job: write its mail (once per job id) and deliver it. Idempotent. */
export async function sendAccountMail(db: Db, mailer: Mailer, jobId: string, job: AccountMailJob): Promise<void> {
  let user: UserRow | undefined;
  if (job.purpose === 'password_reset') user = await findUserByEmail(db, job.email);
  else user = await findUserById(db, job.userId);
  // No account (the requester learns nothing of it), a disabled one, or verified already: no mail.
  if (!user || user.disabled_at || (job.purpose === 'email_verification' && user.email_verified_at)) return;
  if (mailer.kind === 'none') return; // no transport at all: no mail, no token (the start warned)
  const recipient = user;
  await db.transaction(async (tx) => {
    if (await repo.emailOfJob(tx, jobId)) return; // a retry: the mail and its token exist already
    const token = mailer.kind === 'smtp' ? await issueAccountToken(tx, recipient.id, job.purpose) : tokenWithheld;
    const mail =
      job.purpose === 'password_reset' ? resetMail(recipient.name, token) : verificationMail(recipient.name, token);
    await repo.insertJobEmail(tx, {
      id: newId('eml'),
      jobId,
      recipientId: recipient.id,
      kind: job.purpose,
      to: recipient.email,
      ...mail,
    });
  });
  const email = await repo.emailOfJob(db, jobId);
  if (!email || email.status === 'sent') return;
  if (mailer.kind === 'mailbox') {
    await repo.deliverAllToMailbox(db, [email.id]);
    return;
  }
  if ((await deliverBySmtp(db, mailer, email)) === 'busy')
    throw new Error(`${email.id} is being sent by another worker`);
  await repo.forgetBody(db, email.id, sentNote);
}

export function registerAccountMailWorkers(queue: Queue, db: Db, mailer: Mailer, concurrency: number): void {
  work<AccountMailJob>(queue, accountMailQueue, (job) => sendAccountMail(db, mailer, job.id, job.data), {
    concurrency,
  });
}
