// Account recovery and control: change password, password reset by mail, sign out everywhere,
// email verification, and the admin's users: search, sessions, disable and enable.
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { forEachEngine, type TestEnv } from './support/app.ts';
import { waitFor } from './support/wait.ts';
import { startSmtpServer } from './support/smtp.ts';
import { endpoints } from '../src/client.ts';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { openPostgres } from '../src/platform/db.ts';
import { hashSecret } from '../src/modules/accounts/service.ts';

const password = 'correct horse battery staple';
const newPassword = 'a much better passphrase 42';
const code = (res: { body: unknown }) => (res.body as { code?: string }).code;

// Account mail reaches its recipient over SMTP, here a real SMTP server in this process: the only
// way to read a token (the dev mailbox never shows one). Each suite that mails starts with it empty,
// since the engines' suites reuse the same addresses.
const smtp = await startSmtpServer();
after(() => smtp.stop());
const subjects: Record<string, string> = {
  password_reset: 'Reset your password',
  email_verification: 'Verify your email address',
};

/** The mails received for this address, newest first. */
function mailsTo(to: string) {
  return smtp.to(to).toReversed();
}

async function tokenMailed(to: string, kind: string, count = 1): Promise<string> {
  const mails = await waitFor(`${kind} mail to ${to}`, async () => {
    const found = mailsTo(to).filter((m) => m.subject === subjects[kind]);
    return found.length >= count ? found : undefined;
  });
  const token = /\b(er[rv]_[A-Za-z0-9_-]+)/.exec(mails[0]!.text)?.[1];
  assert.ok(token, 'the mail carries the token');
  return token;
}

async function signup(e: TestEnv, email: string) {
  return e.client.ok(endpoints.signup, { body: { email, password, name: 'Grace Hopper' } });
}

/** A new admin with a session, and an API key made with that session. */
async function adminWithKey(e: TestEnv, email: string) {
  const user = await signup(e, email);
  await e.client.ok(endpoints.updateUser, {
    token: e.adminToken,
    params: { id: user.user.id },
    body: { role: 'admin' },
  });
  const session = await e.client.ok(endpoints.login, { body: { email, password } });
  const key = await e.client.ok(endpoints.createApiKey, {
    token: session.token,
    body: { name: `key of ${email}`, role: 'admin' },
  });
  return { id: user.user.id, token: session.token, key: key.key };
}

const works = async (e: TestEnv, token: string) => (await e.client.call(endpoints.me, { token })).status === 200;

forEachEngine('change password and sign out everywhere', 'one', (env) => {
  it('needs the current password; ends every other session and keeps the one that changed it', async () => {
    const e = env();
    const a = await signup(e, 'change@example.com');
    const b = await e.client.ok(endpoints.login, { body: { email: 'change@example.com', password } });
    const wrong = await e.client.call(endpoints.changePassword, {
      token: a.token,
      body: { currentPassword: 'not it at all', newPassword },
    });
    assert.equal(wrong.status, 401);
    assert.equal(code(wrong), 'invalid_credentials');
    const common = await e.client.call(endpoints.changePassword, {
      token: a.token,
      body: { currentPassword: password, newPassword: 'password123' },
    });
    assert.equal(common.status, 400);
    const ok = await e.client.call(endpoints.changePassword, {
      token: a.token,
      body: { currentPassword: password, newPassword },
    });
    assert.equal(ok.status, 204);
    assert.equal((await e.client.call(endpoints.me, { token: b.token })).status, 401, 'the other session ended');
    assert.equal((await e.client.call(endpoints.me, { token: a.token })).status, 200, 'this session goes on');
    assert.equal(
      (await e.client.call(endpoints.login, { body: { email: 'change@example.com', password } })).status,
      401,
    );
    assert.equal(
      (await e.client.call(endpoints.login, { body: { email: 'change@example.com', password: newPassword } })).status,
      200,
    );
  });

  it("signs out everywhere: every session of the user ends, this one too, and no other user's", async () => {
    const e = env();
    const a = await signup(e, 'everywhere@example.com');
    const b = await e.client.ok(endpoints.login, { body: { email: 'everywhere@example.com', password } });
    const other = await e.customer();
    assert.equal((await e.client.call(endpoints.logoutEverywhere, { token: b.token })).status, 204);
    assert.equal((await e.client.call(endpoints.me, { token: a.token })).status, 401);
    assert.equal((await e.client.call(endpoints.me, { token: b.token })).status, 401);
    assert.equal((await e.client.call(endpoints.me, { token: other.token })).status, 200);
  });

  it('keeps the API keys of the user on a change of password, unless revokeApiKeys asks to revoke them', async () => {
    const e = env();
    const admin = await adminWithKey(e, 'keys.change@example.com');
    const other = await e.client.ok(endpoints.createApiKey, {
      token: e.adminToken,
      body: { name: "another admin's", role: 'staff' },
    });
    assert.equal(
      (
        await e.client.call(endpoints.changePassword, {
          token: admin.token,
          body: { currentPassword: password, newPassword },
        })
      ).status,
      204,
    );
    assert.ok(await works(e, admin.key), 'a routine change keeps the key');
    const revoking = await e.client.call(endpoints.changePassword, {
      token: admin.token,
      body: { currentPassword: newPassword, newPassword: password, revokeApiKeys: true },
    });
    assert.equal(revoking.status, 204);
    assert.equal(await works(e, admin.key), false, 'revokeApiKeys revokes it at once');
    assert.ok(await works(e, other.key), "another admin's key is untouched");
    assert.ok(await works(e, admin.token), 'the session that changed it goes on');
  });

  it('keeps the API keys of the user when signing out everywhere (no body), unless revokeApiKeys asks to revoke them', async () => {
    const e = env();
    const admin = await adminWithKey(e, 'keys.everywhere@example.com');
    const other = await e.client.ok(endpoints.createApiKey, {
      token: e.adminToken,
      body: { name: "another admin's", role: 'staff' },
    });
    assert.equal((await e.client.call(endpoints.logoutEverywhere, { token: admin.token })).status, 204);
    assert.equal(await works(e, admin.token), false);
    assert.ok(await works(e, admin.key), 'without the option the key survives');
    const again = await e.client.ok(endpoints.login, { body: { email: 'keys.everywhere@example.com', password } });
    const unknown = await e.client.call(endpoints.logoutEverywhere, {
      token: again.token,
      body: { revokeApiKeys: true, everything: true } as { revokeApiKeys: boolean },
    });
    assert.equal(unknown.status, 400, 'an unknown field is refused');
    assert.equal(
      (await e.client.call(endpoints.logoutEverywhere, { token: again.token, body: { revokeApiKeys: true } })).status,
      204,
    );
    assert.equal(await works(e, again.token), false);
    assert.equal(await works(e, admin.key), false, 'revokeApiKeys revokes it at once');
    assert.ok(await works(e, other.key), "another admin's key is untouched");
    // The API document offers the option, and says the body may be left out.
    const doc = JSON.parse((await e.app.inject({ method: 'GET', url: '/openapi.json' })).body);
    const body = doc.paths['/v1/auth/logout-all'].post.requestBody;
    assert.equal(body.required, false);
    assert.equal(body.content['application/json'].schema.properties.revokeApiKeys.type, 'boolean');
  });

  it('refuses a new password of only white space, naming /newPassword', async () => {
    const e = env();
    const a = await signup(e, 'blank.change@example.com');
    const res = await e.client.call(endpoints.changePassword, {
      token: a.token,
      body: { currentPassword: password, newPassword: ' '.repeat(10) },
    });
    assert.equal(res.status, 400);
    assert.deepEqual((res.body as { errors?: unknown[] }).errors, [
      { path: '/newPassword', message: 'must not be only white space' },
    ]);
    assert.match((res.body as { detail: string }).detail, /Passwords are 8 to 256 characters/);
    assert.equal(
      (await e.client.call(endpoints.login, { body: { email: 'blank.change@example.com', password } })).status,
      200,
      'the password is unchanged',
    );
  });

  it('answers 400 to an API key, which has no password or sessions', async () => {
    const e = env();
    const key = await e.client.ok(endpoints.createApiKey, { token: e.adminToken, body: { name: 'k', role: 'staff' } });
    assert.equal((await e.client.call(endpoints.logoutEverywhere, { token: key.key })).status, 400);
    assert.equal(
      (await e.client.call(endpoints.changePassword, { token: key.key, body: { currentPassword: 'x', newPassword } }))
        .status,
      400,
    );
  });
});

forEachEngine(
  'password reset by mail',
  'one',
  (env) => {
    before(() => {
      smtp.received.length = 0;
    });
    it('answers the same whether or not the email has an account; only the account gets a mail', async () => {
      const e = env();
      await signup(e, 'reset.known@example.com');
      const known = await e.client.call(endpoints.requestPasswordReset, { body: { email: 'Reset.Known@example.com' } });
      const unknown = await e.client.call(endpoints.requestPasswordReset, {
        body: { email: 'reset.nobody@example.com' },
      });
      assert.equal(known.status, 202);
      assert.deepEqual(
        [unknown.status, unknown.body, unknown.headers['content-length']],
        [known.status, known.body, known.headers['content-length']],
      );
      const token = await tokenMailed('reset.known@example.com', 'password_reset');
      assert.match(token, /^err_[A-Za-z0-9_-]{43}$/);
      // Both jobs have run once the queue is empty; the unknown address got nothing.
      await waitFor('the reset jobs to finish', async () => {
        const [row] = await e.database.db.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pgboss.job WHERE name = 'accounts.mail' AND state <> 'completed'",
        );
        return row!.n === 0 ? true : undefined;
      });
      assert.deepEqual(mailsTo('reset.nobody@example.com'), []);
      // Only the token's hash is stored.
      const rows = await e.database.db.query<{ token_hash: Buffer }>(
        "SELECT token_hash FROM account_tokens WHERE purpose = 'password_reset'",
      );
      assert.equal(rows.length, 1);
      assert.deepEqual(Buffer.from(rows[0]!.token_hash), hashSecret(token));
      const jobs = await e.database.db.query<{ data: unknown }>(
        "SELECT data FROM pgboss.job WHERE name = 'accounts.mail'",
      );
      assert.ok(
        jobs.every((j) => !JSON.stringify(j.data).includes('err_')),
        'no job carries a token',
      );
    });

    it('resets with the token once: every session ends, the old password stops working, the token cannot be used again', async () => {
      const e = env();
      const s = await e.client.ok(endpoints.login, { body: { email: 'reset.known@example.com', password } });
      const token = await tokenMailed('reset.known@example.com', 'password_reset');
      const bad = await e.client.call(endpoints.resetPassword, {
        body: { token: 'err_madeup', password: newPassword },
      });
      assert.equal(bad.status, 400);
      assert.equal(code(bad), 'invalid_token');
      assert.equal(
        (await e.client.call(endpoints.resetPassword, { body: { token, password: newPassword } })).status,
        204,
      );
      assert.equal((await e.client.call(endpoints.me, { token: s.token })).status, 401);
      assert.equal(
        (await e.client.call(endpoints.login, { body: { email: 'reset.known@example.com', password } })).status,
        401,
      );
      assert.equal(
        (await e.client.call(endpoints.login, { body: { email: 'reset.known@example.com', password: newPassword } }))
          .status,
        200,
      );
      const again = await e.client.call(endpoints.resetPassword, {
        body: { token, password: 'yet another passphrase 7' },
      });
      assert.equal(again.status, 400);
      assert.equal(code(again), 'invalid_token');
    });

    it("revokes the API keys the user is accountable for, and no one else's", async () => {
      const e = env();
      const admin = await adminWithKey(e, 'reset.keys@example.com');
      const other = await e.client.ok(endpoints.createApiKey, {
        token: e.adminToken,
        body: { name: "another admin's", role: 'staff' },
      });
      // A key made with the user's key answers for the user too.
      const derived = await e.client.ok(endpoints.createApiKey, {
        token: admin.key,
        body: { name: 'made with a key', role: 'staff' },
      });
      await e.client.ok(endpoints.requestPasswordReset, { body: { email: 'reset.keys@example.com' } });
      const token = await tokenMailed('reset.keys@example.com', 'password_reset');
      assert.equal(
        (await e.client.call(endpoints.resetPassword, { body: { token, password: newPassword } })).status,
        204,
      );
      assert.equal(await works(e, admin.key), false, 'the key made with a session is revoked');
      assert.equal(await works(e, derived.key), false, 'and the key made with that key');
      assert.ok(await works(e, other.key), "another admin's key is untouched");
    });

    it('refuses a new password of only white space, naming /password, and keeps the token for a good one', async () => {
      const e = env();
      await signup(e, 'reset.blank@example.com');
      await e.client.ok(endpoints.requestPasswordReset, { body: { email: 'reset.blank@example.com' } });
      const token = await tokenMailed('reset.blank@example.com', 'password_reset');
      const res = await e.client.call(endpoints.resetPassword, { body: { token, password: '\t'.repeat(9) } });
      assert.equal(res.status, 400);
      assert.deepEqual((res.body as { errors?: unknown[] }).errors, [
        { path: '/password', message: 'must not be only white space' },
      ]);
      assert.equal(
        (await e.client.call(endpoints.resetPassword, { body: { token, password: newPassword } })).status,
        204,
      );
    });

    it('of many parallel resets with one token, exactly one succeeds', async () => {
      const e = env();
      await signup(e, 'reset.race@example.com');
      await e.client.ok(endpoints.requestPasswordReset, { body: { email: 'reset.race@example.com' } });
      const token = await tokenMailed('reset.race@example.com', 'password_reset');
      const n = e.engine === 'postgres' ? 200 : 40;
      const results = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          e.client.call(endpoints.resetPassword, { body: { token, password: `parallel passphrase ${i}` } }),
        ),
      );
      const statuses = results.map((r) => r.status);
      assert.equal(statuses.filter((s) => s === 204).length, 1);
      assert.equal(statuses.filter((s) => s === 400).length, n - 1);
    });

    it('refuses an expired token', async () => {
      const e = env();
      await e.client.ok(endpoints.requestPasswordReset, { body: { email: 'reset.race@example.com' } });
      const token = await tokenMailed('reset.race@example.com', 'password_reset', 2);
      await e.database.db.query(
        "UPDATE account_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
        [hashSecret(token)],
      );
      const res = await e.client.call(endpoints.resetPassword, { body: { token, password: newPassword } });
      assert.equal(res.status, 400);
      assert.equal(code(res), 'invalid_token');
    });

    it('throttles requests per email address, known or not, with the same 429', async () => {
      const e = env();
      await signup(e, 'reset.throttle@example.com');
      for (const email of ['reset.throttle@example.com', 'reset.unknown.throttle@example.com']) {
        const statuses: number[] = [];
        for (let i = 0; i < 4; i++)
          statuses.push((await e.client.call(endpoints.requestPasswordReset, { body: { email } })).status);
        assert.deepEqual(statuses, [202, 202, 202, 429], email);
      }
    });

    it('refuses huge and malformed input with 400, not 500', async () => {
      const e = env();
      assert.equal(
        (await e.client.call(endpoints.requestPasswordReset, { body: { email: 'x'.repeat(100_000) } })).status,
        400,
      );
      assert.equal(
        (await e.client.call(endpoints.resetPassword, { body: { token: 'x'.repeat(10_000), password: newPassword } }))
          .status,
        400,
      );
      assert.equal(
        (await e.client.call(endpoints.resetPassword, { body: { token: 'err_ok', password: 'short' } })).status,
        400,
      );
    });
  },
  { PASSWORD_RESET_MAX_PER_EMAIL: '3', PASSWORD_RESET_MAX_PER_CLIENT: '1000', SMTP_URL: smtp.url },
  { workers: true },
);

forEachEngine(
  'password reset: per-client throttle',
  'one',
  (env) => {
    it('one client address asking for many addresses is stopped', async () => {
      const e = env();
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++)
        statuses.push(
          (await e.client.call(endpoints.requestPasswordReset, { body: { email: `spray${i}@example.com` } })).status,
        );
      assert.deepEqual(statuses, [202, 202, 429]);
    });
  },
  { PASSWORD_RESET_MAX_PER_CLIENT: '2' },
);

forEachEngine(
  'email verification (EMAIL_VERIFICATION=true)',
  'one',
  (env) => {
    before(() => {
      smtp.received.length = 0;
    });
    it('mails a token at signup; an unverified user may not order until verified', async () => {
      const e = env();
      await e.product([{ sku: 'VERIFY-1', stock: 5 }]);
      const user = await signup(e, 'verify@example.com');
      assert.equal(user.user.emailVerified, false);
      const order = () =>
        e.client.call(endpoints.placeOrder, {
          token: user.token,
          idempotencyKey: randomUUID(),
          body: { lines: [{ sku: 'VERIFY-1', quantity: 1 }], payment: { method: 'card', token: 'tok_ok' } },
        });
      const refused = await order();
      assert.equal(refused.status, 403);
      assert.equal(code(refused), 'email_unverified');
      const token = await tokenMailed('verify@example.com', 'email_verification');
      assert.equal((await e.client.call(endpoints.verifyEmail, { body: { token } })).status, 204);
      assert.equal(
        code(await e.client.call(endpoints.verifyEmail, { body: { token } })),
        'invalid_token',
        'single use',
      );
      assert.equal((await e.client.ok(endpoints.me, { token: user.token })).emailVerified, true);
      assert.equal((await order()).status, 201);
    });

    it('resends the mail, throttled per user; a verified user gets no new mail', async () => {
      const e = env();
      const user = await signup(e, 'verify.again@example.com');
      await tokenMailed('verify.again@example.com', 'email_verification');
      assert.equal((await e.client.call(endpoints.resendVerification, { token: user.token })).status, 202);
      const token = await tokenMailed('verify.again@example.com', 'email_verification', 2);
      assert.equal((await e.client.call(endpoints.verifyEmail, { body: { token } })).status, 204);
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++)
        statuses.push((await e.client.call(endpoints.resendVerification, { token: user.token })).status);
      assert.deepEqual(statuses, [202, 202, 429]);
    });
  },
  { EMAIL_VERIFICATION: 'true', PASSWORD_RESET_MAX_PER_EMAIL: '3', SMTP_URL: smtp.url },
  { workers: true },
);

forEachEngine('email verification is off by default', 'one', (env) => {
  it('an unverified user orders as before', async () => {
    const e = env();
    await e.product([{ sku: 'VERIFY-OFF', stock: 5 }]);
    const c = await e.customer();
    const res = await e.client.call(endpoints.placeOrder, {
      token: c.token,
      idempotencyKey: randomUUID(),
      body: { lines: [{ sku: 'VERIFY-OFF', quantity: 1 }], payment: { method: 'card', token: 'tok_ok' } },
    });
    assert.equal(res.status, 201);
  });
});

forEachEngine('admin: users, sessions, disable and enable', 'one', (env) => {
  it('searches users by a case-insensitive prefix of the email or the name, newest first, by cursor', async () => {
    const e = env();
    const people: [string, string][] = [
      ['zoe.one@example.com', 'Zoe One'],
      ['zoe.two@example.com', 'Zoe Two'],
      ['other@example.com', 'Zorro Zed'],
      ['z_oe@example.com', 'Percent'],
    ];
    for (const [email, name] of people) {
      await e.client.ok(endpoints.signup, { body: { email, password, name } });
    }
    const search = async (q: string, limit = 20, cursor?: string) =>
      e.client.ok(endpoints.listUsers, { token: e.adminToken, query: { q, limit, ...(cursor ? { cursor } : {}) } });
    assert.deepEqual(
      (await search('ZOE')).data.map((u) => u.email),
      ['zoe.two@example.com', 'zoe.one@example.com'],
    );
    assert.deepEqual(
      (await search('zorro')).data.map((u) => u.email),
      ['other@example.com'],
    );
    // LIKE's wildcards are plain characters here.
    assert.deepEqual(
      (await search('z_')).data.map((u) => u.email),
      ['z_oe@example.com'],
    );
    assert.deepEqual((await search('%')).data, []);
    const first = await search('z', 2);
    assert.equal(first.data.length, 2);
    const second = await search('z', 2, first.nextCursor!);
    assert.equal(second.data.length, 2);
    assert.equal(second.nextCursor, null);
    const staff = await e.client.ok(endpoints.listUsers, { token: e.adminToken, query: { staff: true, limit: 100 } });
    assert.ok(staff.data.length >= 1 && staff.data.every((u) => u.role !== 'customer'));
    assert.equal(
      (await e.client.call(endpoints.listUsers, { token: e.adminToken, query: { q: 'x'.repeat(300), limit: 5 } }))
        .status,
      400,
    );
  });

  it('is for admins only: staff and customers get 403', async () => {
    const e = env();
    const c = await e.customer();
    const s = await e.customer('Future Staff');
    await e.client.ok(endpoints.updateUser, { token: e.adminToken, params: { id: s.id }, body: { role: 'staff' } });
    for (const token of [c.token, s.token]) {
      assert.equal((await e.client.call(endpoints.listUsers, { token, query: { limit: 5 } })).status, 403);
      assert.equal((await e.client.call(endpoints.getUser, { token, params: { id: c.id } })).status, 403);
      assert.equal(
        (await e.client.call(endpoints.listUserSessions, { token, params: { id: c.id }, query: { limit: 5 } })).status,
        403,
      );
      assert.equal((await e.client.call(endpoints.disableUser, { token, params: { id: c.id } })).status, 403);
      assert.equal((await e.client.call(endpoints.enableUser, { token, params: { id: c.id } })).status, 403);
    }
    assert.equal((await e.client.call(endpoints.me, { token: c.token })).status, 200, 'nothing was disabled');
  });

  it("lists a user's sessions without their tokens", async () => {
    const e = env();
    const c = await e.customer();
    await e.client.ok(endpoints.logout, { token: c.token });
    const res = await e.client.ok(endpoints.listUserSessions, {
      token: e.adminToken,
      params: { id: c.id },
      query: { limit: 10 },
    });
    assert.equal(res.data.length, 1);
    assert.equal(res.data[0]!.live, false);
    assert.ok(res.data[0]!.revokedAt);
    assert.deepEqual(Object.keys(res.data[0]!).sort(), ['createdAt', 'expiresAt', 'id', 'live', 'revokedAt']);
    assert.equal(
      (
        await e.client.call(endpoints.listUserSessions, {
          token: e.adminToken,
          params: { id: 'usr_nobody' },
          query: { limit: 10 },
        })
      ).status,
      404,
    );
  });

  it('disabling ends the sessions and keys at once and refuses login with 403 account_disabled; enabling lets them sign in anew', async () => {
    const e = env();
    const c = await e.customer();
    const staffAdmin = await e.customer('Second Admin');
    await e.client.ok(endpoints.updateUser, {
      token: e.adminToken,
      params: { id: staffAdmin.id },
      body: { role: 'admin' },
    });
    const key = await e.client.ok(endpoints.createApiKey, {
      token: staffAdmin.token,
      body: { name: 'theirs', role: 'staff' },
    });
    assert.equal((await e.client.call(endpoints.me, { token: key.key })).status, 200);

    const disabled = await e.client.ok(endpoints.disableUser, {
      token: e.adminToken,
      params: { id: c.id },
      idempotencyKey: randomUUID(),
    });
    assert.ok(disabled.disabledAt);
    assert.equal((await e.client.call(endpoints.me, { token: c.token })).status, 401);
    const login = await e.client.call(endpoints.login, { body: { email: c.email, password } });
    assert.equal(login.status, 403);
    assert.equal(code(login), 'account_disabled');
    // A wrong password still answers 401: the disabled state is told only to whoever knows the password.
    assert.equal(
      (await e.client.call(endpoints.login, { body: { email: c.email, password: 'wrong wrong wrong' } })).status,
      401,
    );

    await e.client.ok(endpoints.disableUser, { token: e.adminToken, params: { id: staffAdmin.id } });
    assert.equal(
      (await e.client.call(endpoints.me, { token: key.key })).status,
      401,
      "a disabled user's key stops working",
    );

    const enabled = await e.client.ok(endpoints.enableUser, {
      token: e.adminToken,
      params: { id: c.id },
      idempotencyKey: randomUUID(),
    });
    assert.equal(enabled.disabledAt, null);
    assert.equal((await e.client.call(endpoints.me, { token: c.token })).status, 401, 'old sessions stay revoked');
    const again = await e.client.ok(endpoints.login, { body: { email: c.email, password } });
    assert.equal((await e.client.call(endpoints.me, { token: again.token })).status, 200);
  });

  it('refuses to disable yourself or the only enabled admin (409), and an unknown user (404)', async () => {
    const e = env();
    const me = await e.client.ok(endpoints.me, { token: e.adminToken });
    const self = await e.client.call(endpoints.disableUser, { token: e.adminToken, params: { id: me.id } });
    assert.equal(self.status, 409);
    assert.equal(code(self), 'invalid_state');
    const key = await e.client.ok(endpoints.createApiKey, {
      token: e.adminToken,
      body: { name: 'admin key', role: 'admin' },
    });
    const last = await e.client.call(endpoints.disableUser, { token: key.key, params: { id: me.id } });
    assert.equal(last.status, 409);
    assert.equal(
      (await e.client.call(endpoints.disableUser, { token: e.adminToken, params: { id: 'usr_nobody' } })).status,
      404,
    );
  });

  it('filters orders and conversations by customer for staff, never for a customer', async () => {
    const e = env();
    const a = await e.customer();
    const b = await e.customer();
    await e.client.ok(endpoints.openConversation, { token: a.token, body: { subject: 'A', body: 'hello' } });
    const mine = await e.client.ok(endpoints.listConversations, {
      token: e.adminToken,
      query: { limit: 10, customerId: a.id },
    });
    assert.equal(mine.data.length, 1);
    assert.equal(
      (await e.client.ok(endpoints.listConversations, { token: e.adminToken, query: { limit: 10, customerId: b.id } }))
        .data.length,
      0,
    );
    assert.equal(
      (await e.client.ok(endpoints.listConversations, { token: b.token, query: { limit: 10, customerId: a.id } })).data
        .length,
      0,
    );
    assert.equal(
      (await e.client.ok(endpoints.listOrders, { token: b.token, query: { limit: 10, customerId: a.id } })).data.length,
      0,
    );
  });

  it('on PostgreSQL, a session used on a second instance is refused at once after disabling on the first', async (t) => {
    const e = env();
    if (e.engine !== 'postgres') return t.skip('the embedded database is one process');
    const c = await e.customer();
    const db2 = openPostgres(e.database.url!, 3);
    const app2 = await buildApp(
      loadConfig({ LOG_LEVEL: 'silent', SECURE_COOKIES: 'false', DATABASE_URL: e.database.url! }),
      db2,
    );
    try {
      const me2 = () => app2.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${c.token}` } });
      assert.equal((await me2()).statusCode, 200);
      await e.client.ok(endpoints.disableUser, { token: e.adminToken, params: { id: c.id } });
      assert.equal((await me2()).statusCode, 401);
    } finally {
      await app2.close();
      await db2.close();
    }
  });

  it('on PostgreSQL, the search reads indexes, not the whole table, at 10,000 users', async (t) => {
    const e = env();
    if (e.engine !== 'postgres') return t.skip('query plans are checked on PostgreSQL');
    await e.customers(10_000);
    await e.database.db.query('ANALYZE users');
    const plan = (
      await e.database.db.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN SELECT * FROM users WHERE ('zoe%' IS NULL OR lower(email) LIKE 'zoe%' OR lower(name) LIKE 'zoe%')
         AND (NOT false OR role <> 'customer') AND (NULL::text IS NULL OR id < NULL) ORDER BY id DESC LIMIT 21`,
      )
    )
      .map((r) => r['QUERY PLAN'])
      .join('\n');
    assert.doesNotMatch(plan, /Seq Scan/, plan);
    const staffPlan = (
      await e.database.db.query<{ 'QUERY PLAN': string }>(
        "EXPLAIN SELECT * FROM users WHERE role <> 'customer' ORDER BY id DESC LIMIT 21",
      )
    )
      .map((r) => r['QUERY PLAN'])
      .join('\n');
    assert.doesNotMatch(staffPlan, /Seq Scan/, staffPlan);
  });
});
