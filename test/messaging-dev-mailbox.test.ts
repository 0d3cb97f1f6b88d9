// The dev mailbox (GET /v1/dev/mailbox, DEV_MAILBOX): admins only, never cached, never a working
// account token in it, absent in production; and where mail goes when there is neither SMTP nor
// the mailbox. Issue 23, finding 1: staff read a reset token for the admin's address there.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine, injectTransport, type TestEnv } from './support/app.ts';
import { waitFor } from './support/wait.ts';
import { createClient, endpoints } from '../src/client.ts';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { newId } from '../src/platform/ids.ts';
import { issueAccountToken } from '../src/modules/accounts/service.ts';

const password = 'correct horse battery staple';
const newPassword = 'a much better passphrase 42';

async function staffMember(e: TestEnv) {
  const s = await e.customer('Staff Member');
  await e.client.ok(endpoints.updateUser, { token: e.adminToken, params: { id: s.id }, body: { role: 'staff' } });
  return s;
}

/** The mailbox's mail of this kind to this address, as an admin reads it, once it is there. */
async function mailboxMail(e: TestEnv, to: string, kind: string) {
  return waitFor(`a ${kind} mail to ${to} in the mailbox`, async () => {
    const box = await e.client.ok(endpoints.listMailbox, { token: e.adminToken, query: { limit: 100 } });
    return box.data.find((m) => m.to === to && m.kind === kind);
  });
}

/** Every string in the mail that could be sent as a token (what the token schema accepts). */
function tokenCandidates(mail: { subject: string; text: string; html: string }): string[] {
  return [...new Set(`${mail.subject}\n${mail.text}\n${mail.html}`.match(/[A-Za-z0-9_-]{8,128}/g) ?? [])];
}

/** Waits until every job of the queue has finished for good. */
async function queueDone(e: TestEnv, queue: string): Promise<void> {
  await waitFor(`the ${queue} jobs to complete`, async () => {
    const [row] = await e.database.db.query<{ n: number; open: number }>(
      `SELECT count(*)::int AS n, count(*) FILTER (WHERE state <> 'completed')::int AS open
         FROM (SELECT state FROM pgboss.job WHERE name = $1 UNION ALL SELECT state FROM pgboss.archive WHERE name = $1) j`,
      [queue],
    );
    return row!.n > 0 && row!.open === 0 ? true : undefined;
  });
}

forEachEngine(
  'the dev mailbox (on by default outside production)',
  'one',
  (env) => {
    it('is for admins only: staff and customers get 403', async () => {
      const e = env();
      const customer = await e.customer();
      const staff = await staffMember(e);
      for (const token of [customer.token, staff.token]) {
        const res = await e.client.call(endpoints.listMailbox, { token, query: { limit: 10 } });
        assert.equal(res.status, 403);
        assert.equal((res.body as { code?: string }).code, 'forbidden');
      }
      assert.equal(
        (await e.client.call(endpoints.listMailbox, { token: e.adminToken, query: { limit: 10 } })).status,
        200,
      );
    });

    it('answers with Cache-Control: no-store', async () => {
      const e = env();
      const res = await e.client.call(endpoints.listMailbox, { token: e.adminToken, query: { limit: 10 } });
      assert.equal(res.status, 200);
      assert.equal(res.headers['cache-control'], 'no-store');
    });

    it('shows a password reset mail without a working token: nothing it shows confirms the reset', async () => {
      const e = env();
      const victim = await e.client.ok(endpoints.signup, {
        body: { email: 'victim@example.com', password, name: 'Victim' },
      });
      await e.client.ok(endpoints.requestPasswordReset, { body: { email: 'victim@example.com' } });
      const mail = await mailboxMail(e, 'victim@example.com', 'password_reset');
      for (const candidate of tokenCandidates(mail)) {
        const res = await e.client.call(endpoints.resetPassword, { body: { token: candidate, password: newPassword } });
        assert.equal(res.status, 400, `"${candidate}" from the mailbox does not reset the password`);
      }
      assert.match(mail.text, /token withheld/);
      assert.doesNotMatch(`${mail.text}${mail.html}`, /\berr_/);
      assert.equal(
        (await e.client.call(endpoints.me, { token: victim.token })).status,
        200,
        'the victim is still signed in',
      );
      assert.equal(
        (await e.client.call(endpoints.login, { body: { email: 'victim@example.com', password } })).status,
        200,
        'with the same password',
      );
      const tokens = await e.database.db.query('SELECT 1 FROM account_tokens WHERE user_id = $1', [victim.user.id]);
      assert.deepEqual(tokens, [], 'no token was made that nobody could read');
    });

    it('shows a verification mail without a working token: nothing it shows verifies the address', async () => {
      const e = env();
      const user = await e.client.ok(endpoints.signup, {
        body: { email: 'unverified@example.com', password, name: 'Unverified' },
      });
      const mail = await mailboxMail(e, 'unverified@example.com', 'email_verification');
      for (const candidate of tokenCandidates(mail)) {
        assert.equal(
          (await e.client.call(endpoints.verifyEmail, { body: { token: candidate } })).status,
          400,
          `"${candidate}" verifies nothing`,
        );
      }
      assert.match(mail.text, /token withheld/);
      assert.equal((await e.client.ok(endpoints.me, { token: user.token })).emailVerified, false);
    });

    it('blanks a live token in a mail kept before this rule, so the mailbox never serves one', async () => {
      const e = env();
      const user = await e.client.ok(endpoints.signup, {
        body: { email: 'old.mail@example.com', password, name: 'Old Mail' },
      });
      const token = await e.database.db.transaction((tx) => issueAccountToken(tx, user.user.id, 'password_reset'));
      await e.database.db.query(
        `INSERT INTO emails (id, recipient_id, kind, to_address, subject, text_body, html_body, status, transport, sent_at)
       VALUES ($1, $2, 'password_reset', 'old.mail@example.com', 'Reset your password', $3, $4, 'sent', 'mailbox', now())`,
        [newId('eml'), user.user.id, `Your reset token:\n\n  ${token}\n`, `<p><code>${token}</code></p>`],
      );
      const mail = await mailboxMail(e, 'old.mail@example.com', 'password_reset');
      assert.ok(!`${mail.subject}${mail.text}${mail.html}`.includes(token), 'the token is not served');
      for (const candidate of tokenCandidates(mail)) {
        assert.equal(
          (await e.client.call(endpoints.resetPassword, { body: { token: candidate, password: newPassword } })).status,
          400,
          candidate,
        );
      }
    });

    it('is absent with DEV_MAILBOX=false; present under NODE_ENV=production only if DEV_MAILBOX=true (which start refuses)', async () => {
      const e = env();
      const statusWith = async (settings: Record<string, string>) => {
        const app = await buildApp(
          loadConfig({ LOG_LEVEL: 'silent', SECURE_COOKIES: 'false', ...settings }),
          e.database.db,
          { logStream: { write: () => {} } },
        );
        try {
          return (
            await createClient(injectTransport(app)).call(endpoints.listMailbox, {
              token: e.adminToken,
              query: { limit: 1 },
            })
          ).status;
        } finally {
          await app.close();
        }
      };
      assert.equal(await statusWith({ DEV_MAILBOX: 'false' }), 404);
      assert.equal(await statusWith({ NODE_ENV: 'production' }), 404);
      assert.equal(await statusWith({ NODE_ENV: 'production', DEV_MAILBOX: 'true' }), 200);
    });
  },
  { EMAIL_VERIFICATION: 'true' },
  { workers: true },
);

forEachEngine(
  'mail under NODE_ENV=production without SMTP_URL: no mailbox, nothing delivered',
  'one',
  (env) => {
    it('has no mailbox: an admin gets 404, and the API document does not list it', async () => {
      const e = env();
      const res = await e.client.call(endpoints.listMailbox, { token: e.adminToken, query: { limit: 10 } });
      assert.equal(res.status, 404);
      assert.equal((res.body as { code?: string }).code, 'not_found');
      const doc = JSON.parse((await e.app.inject({ method: 'GET', url: '/openapi.json' })).body) as {
        paths: Record<string, unknown>;
      };
      assert.equal(doc.paths['/v1/dev/mailbox'], undefined);
    });

    it('writes no reset mail and makes no token; keeps an order confirmation recorded but undelivered', async () => {
      const e = env();
      const user = await e.client.ok(endpoints.signup, {
        body: { email: 'nowhere@example.com', password, name: 'Nowhere' },
      });
      await e.client.ok(endpoints.requestPasswordReset, { body: { email: 'nowhere@example.com' } });
      await queueDone(e, 'accounts.mail');
      assert.deepEqual(await e.database.db.query('SELECT 1 FROM emails WHERE recipient_id = $1', [user.user.id]), []);
      assert.deepEqual(
        await e.database.db.query('SELECT 1 FROM account_tokens WHERE user_id = $1', [user.user.id]),
        [],
      );

      await e.product([{ sku: 'NOWHERE-1', stock: 5 }]);
      await e.client.ok(endpoints.placeOrder, {
        token: user.token,
        idempotencyKey: 'nowhere-order',
        body: { lines: [{ sku: 'NOWHERE-1', quantity: 1 }], payment: { method: 'card', token: 'tok_ok' } },
      });
      await waitFor('the confirmation to be recorded', async () => {
        const [row] = await e.database.db.query('SELECT 1 FROM emails WHERE recipient_id = $1', [user.user.id]);
        return row;
      });
      await queueDone(e, 'notifications.email');
      const rows = await e.database.db.query<{ kind: string; status: string; transport: string | null }>(
        'SELECT kind, status, transport FROM emails WHERE recipient_id = $1',
        [user.user.id],
      );
      assert.deepEqual(rows, [{ kind: 'order_confirmation', status: 'pending', transport: null }]);
    });
  },
  { NODE_ENV: 'production' },
  { workers: true },
);
