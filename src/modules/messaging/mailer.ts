// Where mail goes: over SMTP (nodemailer) when SMTP_URL is set; otherwise into the dev mailbox (the
// emails table itself, read by admins through GET /v1/dev/mailbox) when DEV_MAILBOX is on; otherwise
// nowhere: the mail is recorded and stays undelivered (the start warns), until retention deletes it.
import type nodemailer from 'nodemailer';

export interface OutgoingMail {
  messageId: string;
  to: string;
  subject: string;
  text: string;
  html: string;
}

export type Mailer = { kind: 'mailbox' } | { kind: 'none' } | { kind: 'smtp'; send(mail: OutgoingMail): Promise<void> };

export interface MailerConfig {
  smtpUrl: string | undefined;
  mailFrom: string;
  devMailbox: boolean;
}

/** Longest an SMTP conversation may take; the claim on an email outlasts it. */
export const smtpTimeoutMs = 30_000;

export function createMailer(config: MailerConfig): Mailer {
  if (!config.smtpUrl) return { kind: config.devMailbox ? 'mailbox' : 'none' };
  // A connection per message: mail is rare next to requests, and nothing is left open to close.
  // nodemailer is loaded on first use, not by every start (most send nothing, or to the mailbox).
  const smtpUrl = config.smtpUrl;
  let transport: Promise<ReturnType<typeof nodemailer.createTransport>> | undefined;
  const connect = () =>
    (transport ??= import('nodemailer').then(({ default: mailer }) =>
      mailer.createTransport({
        url: smtpUrl,
        connectionTimeout: 10_000,
        greetingTimeout: 10_000,
        socketTimeout: smtpTimeoutMs,
      } as Parameters<typeof nodemailer.createTransport>[0]),
    ));
  return {
    kind: 'smtp',
    async send(mail) {
      await (
        await connect()
      ).sendMail({
        from: config.mailFrom,
        to: mail.to,
        subject: mail.subject,
        text: mail.text,
        html: mail.html,
        // Stable per email: a receiver can drop the copy that a crash between "sent" and
        // "recorded as sent" would make.
        messageId: mail.messageId,
      });
    },
  };
}
