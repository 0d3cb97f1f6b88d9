import { it, after } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine, type TestEnv } from './support/app.ts';
import { waitFor } from './support/wait.ts';
import { startSmtpServer, type ReceivedMail } from './support/smtp.ts';
import { endpoints } from '../src/client.ts';
import type { Db, Tx } from '../src/platform/db.ts';
import { publishEvent } from '../src/platform/events.ts';
import { createMailer } from '../src/modules/messaging/mailer.ts';
import {
  emailQueue,
  readOrderEventEmails,
  sendEventEmails,
  sendEventsEmails,
} from '../src/modules/messaging/notifications.ts';
import { escapeHtml, formatMoney, html, oneLine } from '../src/modules/messaging/templates.ts';
import { openEventStream } from './support/event-source.ts';

const smtp = await startSmtpServer();
after(() => smtp.stop());

let keys = 0;
const hostileName = 'Bob <b>"&"</b> O\'Neil';

async function customer(e: TestEnv, name = hostileName) {
  return e.customer(name);
}

async function order(e: TestEnv, token: string, card: string) {
  return e.client.ok(endpoints.placeOrder, {
    token,
    idempotencyKey: `notify-${++keys}`,
    body: { lines: [{ sku: 'MAIL-1', quantity: 3 }], payment: { method: 'card', token: card } },
  });
}

async function eventOf(db: Db, type: string, where: string, value: string): Promise<string> {
  return waitFor(`a ${type} event`, async () => {
    const [row] = await db.query<{ id: string }>(`SELECT id FROM events WHERE type = $1 AND ${where} = $2`, [
      type,
      value,
    ]);
    return row?.id;
  });
}

async function mailTo(address: string, count = 1): Promise<ReceivedMail[]> {
  return waitFor(`${count} email(s) to ${address}`, async () =>
    smtp.to(address).length >= count ? smtp.to(address) : undefined,
  );
}

/** Waits until the email job of the event has finished for good (completed). */
async function jobCompleted(db: Db, eventId: string): Promise<void> {
  await waitFor(`the email job of ${eventId}`, async () => {
    const [row] = await db.query<{ state: string }>(
      `SELECT state FROM pgboss.job WHERE name = $1 AND data->>'eventId' = $2
       UNION ALL SELECT state FROM pgboss.archive WHERE name = $1 AND data->>'eventId' = $2`,
      [emailQueue, eventId],
    );
    return row?.state === 'completed' ? true : undefined;
  });
}

/** The email jobs of the event, waiting, done or archived. */
async function jobsOf(db: Db, eventId: string): Promise<number> {
  const [row] = await db.query<{ n: number }>(
    `SELECT (SELECT count(*) FROM pgboss.job WHERE name = $1 AND data->>'eventId' = $2)::int
          + (SELECT count(*) FROM pgboss.archive WHERE name = $1 AND data->>'eventId' = $2)::int AS n`,
    [emailQueue, eventId],
  );
  return row!.n;
}

/** Whether the email reader's position is at or past the event. */
async function readerPassed(db: Db, eventId: string): Promise<boolean> {
  const [row] = await db.query<{ passed: boolean }>(
    'SELECT (c.tx, c.id) >= (e.tx, e.id) AS passed FROM email_outbox_cursor c, events e WHERE e.id = $1',
    [eventId],
  );
  return row!.passed;
}

/** Moves the email reader's position back to just before the event, as if it had never read it. */
async function readerBefore(db: Db, eventId: string): Promise<void> {
  await db.query("UPDATE email_outbox_cursor SET tx = e.tx, id = '' FROM events e WHERE e.id = $1", [eventId]);
}

forEachEngine(
  'email notifications over SMTP, through the queue',
  (env) => {
    it('an order confirmation when an order is paid, its variables escaped in the HTML', async () => {
      const e = env();
      await e.product([{ sku: 'MAIL-1', stock: 1000, amount: 123456 }]);
      const bob = await customer(e);
      const o = await order(e, bob.token, 'tok_ok');
      const [mail] = await mailTo(bob.email);
      assert.equal(mail!.subject, `Order ${o.id} confirmed`);
      assert.match(mail!.from, /^no-reply@engine-room\.local$/);
      assert.ok(mail!.text.includes(`Hello ${hostileName},`), 'plain text is as written');
      assert.ok(mail!.text.includes('3,703.68 EUR'), mail!.text);
      assert.ok(mail!.html.includes('Hello Bob &lt;b&gt;&quot;&amp;&quot;&lt;/b&gt; O&#39;Neil,'), mail!.html);
      assert.ok(!mail!.html.includes('<b>"&"</b>'), 'no markup from a variable');
      const eventId = await eventOf(e.database.db, 'order.paid', "data->'order'->>'id'", o.id);
      assert.equal(
        mail!.messageId,
        `<${(await e.database.db.query<{ id: string }>('SELECT id FROM emails WHERE event_id = $1', [eventId]))[0]!.id}@engine-room.local>`,
      );
    });

    it('a notice when payment fails', async () => {
      const e = env();
      const bob = await customer(e, 'Declined Dan');
      const o = await order(e, bob.token, 'tok_declined');
      const [mail] = await mailTo(bob.email);
      assert.equal(mail!.subject, `Payment failed for order ${o.id}`);
      assert.ok(mail!.text.includes('could not charge your card'));
    });

    it('a new message to a participant with no live stream open, but not to one watching', async () => {
      const e = env();
      const away = await customer(e, 'Away Amy');
      const c = await e.client.ok(endpoints.openConversation, {
        token: away.token,
        body: { subject: 'Where is it? <i>', body: 'first' },
      });
      await e.client.ok(endpoints.postMessage, {
        token: e.adminToken,
        params: { id: c.id },
        body: { body: 'It ships <script>x()</script>\nsecond line' },
      });
      const [mail] = await mailTo(away.email);
      assert.equal(mail!.subject, 'New message: Where is it? <i>');
      assert.ok(mail!.text.includes('> It ships <script>x()</script>\n> second line'), mail!.text);
      assert.ok(mail!.html.includes('It ships &lt;script&gt;x()&lt;/script&gt;'), mail!.html);
      assert.ok(!mail!.html.includes('<script>'));

      const watching = await customer(e, 'Watching Will');
      const c2 = await e.client.ok(endpoints.openConversation, {
        token: watching.token,
        body: { subject: 'Live', body: 'hi' },
      });
      const base = await e.app.listen({ port: 0, host: '127.0.0.1' });
      const live = await openEventStream(`${base}/v1/events`, { authorization: `Bearer ${watching.token}` });
      await live.next((x) => x.event === 'ready');
      const reply = await e.client.ok(endpoints.postMessage, {
        token: e.adminToken,
        params: { id: c2.id },
        body: { body: 'you are online' },
      });
      await live.next((x) => x.event === 'message.created');
      const eventId = await eventOf(e.database.db, 'message.created', "data->'message'->>'id'", reply.id);
      await jobCompleted(e.database.db, eventId);
      live.close();
      assert.deepEqual(smtp.to(watching.email), [], 'the stream told them; no email');
      assert.equal((await e.database.db.query('SELECT 1 FROM emails WHERE event_id = $1', [eventId])).length, 0);

      // The customer's answer goes to the staff member who has written in the conversation.
      const staffMail = (
        await e.database.db.query<{ email: string }>("SELECT email FROM users WHERE role = 'admin' LIMIT 1")
      )[0]!.email;
      const before = smtp.to(staffMail).length;
      await e.client.ok(endpoints.postMessage, { token: away.token, params: { id: c.id }, body: { body: 'thanks!' } });
      const toStaff = await mailTo(staffMail, before + 1);
      assert.equal(toStaff[toStaff.length - 1]!.subject, 'New message: Where is it? <i>');
      assert.ok(toStaff[toStaff.length - 1]!.text.includes('Away Amy wrote'));
    });

    it('exactly one email per event even when its job runs twice, or twice at once', async () => {
      const e = env();
      const bob = await customer(e, 'Twice Tom');
      const o = await order(e, bob.token, 'tok_ok');
      await mailTo(bob.email);
      const eventId = await eventOf(e.database.db, 'order.paid', "data->'order'->>'id'", o.id);
      await jobCompleted(e.database.db, eventId);
      const mailer = createMailer({
        smtpUrl: smtp.url,
        mailFrom: 'Engine Room <no-reply@engine-room.local>',
        devMailbox: false,
      });
      const options = { heartbeatSeconds: 15, smtpConcurrency: 4 };
      await sendEventEmails(e.database.db, mailer, options, eventId);
      await Promise.all([
        sendEventEmails(e.database.db, mailer, options, eventId),
        sendEventEmails(e.database.db, mailer, options, eventId),
      ]);
      assert.equal(smtp.to(bob.email).length, 1, 'a job run again sends nothing again');

      // A fresh event whose job three runners take at once (two here, one in the workers).
      const amy = await customer(e, 'Racing Rita');
      const c = await e.client.ok(endpoints.openConversation, {
        token: amy.token,
        body: { subject: 'Race', body: 'x' },
      });
      const reply = await e.client.ok(endpoints.postMessage, {
        token: e.adminToken,
        params: { id: c.id },
        body: { body: 'racing reply' },
      });
      const raceId = await eventOf(e.database.db, 'message.created', "data->'message'->>'id'", reply.id);
      const runs = await Promise.allSettled([
        sendEventEmails(e.database.db, mailer, options, raceId),
        sendEventEmails(e.database.db, mailer, options, raceId),
      ]);
      // A run that found the email claimed by another fails, so that its job is retried until sent.
      for (const r of runs) if (r.status === 'rejected') assert.match(String(r.reason), /being sent by another worker/);
      await mailTo(amy.email);
      await jobCompleted(e.database.db, raceId);
      await sendEventEmails(e.database.db, mailer, options, raceId);
      assert.equal(smtp.to(amy.email).length, 1);
      const [row] = await e.database.db.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM emails WHERE event_id = $1',
        [raceId],
      );
      assert.equal(row!.n, 1);
    });

    it('the emails of several events worked as one batch: one email each, and a batch run again sends nothing', async () => {
      const e = env();
      const people = [await customer(e, 'Batch Bea'), await customer(e, 'Batch Ben'), await customer(e, 'Batch Bo')];
      const orders = await Promise.all(people.map((p) => order(e, p.token, 'tok_ok')));
      for (const p of people) await mailTo(p.email);
      const eventIds = await Promise.all(
        orders.map((o) => eventOf(e.database.db, 'order.paid', "data->'order'->>'id'", o.id)),
      );
      for (const id of eventIds) await jobCompleted(e.database.db, id);
      const mailer = createMailer({
        smtpUrl: smtp.url,
        mailFrom: 'Engine Room <no-reply@engine-room.local>',
        devMailbox: false,
      });
      // The three again, one twice, and an event that does not exist: nothing to send, nothing failed.
      const failed = await sendEventsEmails(e.database.db, mailer, { heartbeatSeconds: 15, smtpConcurrency: 2 }, [
        ...eventIds,
        eventIds[0]!,
        'evt_00000000000000000000000000',
      ]);
      assert.deepEqual([...failed.keys()], []);
      for (const p of people) assert.equal(smtp.to(p.email).length, 1, p.email);
      const [row] = await e.database.db.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM emails WHERE event_id = ANY($1::text[])',
        [eventIds],
      );
      assert.equal(row!.n, 3);
    });

    it('an SMTP server that is down makes the job retry, and nothing is lost', async () => {
      const e = env();
      const dora = await customer(e, 'Downtime Dora');
      const c = await e.client.ok(endpoints.openConversation, {
        token: dora.token,
        body: { subject: 'Outage', body: 'x' },
      });
      await smtp.stop();
      try {
        const reply = await e.client.ok(endpoints.postMessage, {
          token: e.adminToken,
          params: { id: c.id },
          body: { body: 'sent during the outage' },
        });
        const eventId = await eventOf(e.database.db, 'message.created', "data->'message'->>'id'", reply.id);
        const failed = await waitFor('a failed attempt', async () => {
          const [row] = await e.database.db.query<{ status: string; attempts: number; last_error: string | null }>(
            'SELECT status, attempts, last_error FROM emails WHERE event_id = $1',
            [eventId],
          );
          return row && row.attempts >= 1 && row.last_error ? row : undefined;
        });
        assert.equal(failed.status, 'pending', 'released for the retry');
        assert.match(failed.last_error!, /ECONNREFUSED|connect/i);
        assert.deepEqual(smtp.to(dora.email), []);
      } finally {
        await smtp.start();
      }
      const [mail] = await mailTo(dora.email);
      assert.ok(mail!.text.includes('sent during the outage'));
      const [job] = await e.database.db.query<{ retry_count: number }>(
        `SELECT retry_count FROM pgboss.job WHERE name = $1 AND data->>'eventId' = (SELECT id FROM events WHERE data->'message'->>'body' = 'sent during the outage')
       UNION ALL SELECT retry_count FROM pgboss.archive WHERE name = $1 AND data->>'eventId' = (SELECT id FROM events WHERE data->'message'->>'body' = 'sent during the outage')`,
        [emailQueue],
      );
      assert.ok(job!.retry_count >= 1, 'the job was retried');
      assert.equal(smtp.to(dora.email).length, 1);
    });
  },
  { SMTP_URL: smtp.url },
  { workers: true },
);

forEachEngine(
  'email notifications without SMTP: the dev mailbox',
  (env) => {
    it('keeps mail in a mailbox that admins read through the API, once per event', async () => {
      const e = env();
      await e.product([{ sku: 'MAIL-1', stock: 1000, amount: 999 }]);
      const bob = await customer(e, 'Mailbox Max');
      const o = await order(e, bob.token, 'tok_ok');
      const found = await waitFor('the confirmation in the mailbox', async () => {
        const box = await e.client.ok(endpoints.listMailbox, { token: e.adminToken, query: { limit: 100 } });
        return box.data.find((m) => m.to === bob.email);
      });
      assert.equal(found.subject, `Order ${o.id} confirmed`);
      assert.equal(found.kind, 'order_confirmation');
      assert.ok(found.html.includes('9.99 EUR') || found.html.includes('29.97 EUR'));
      assert.ok(found.sentAt);

      await jobCompleted(e.database.db, found.eventId!);
      const mailer = createMailer({ smtpUrl: undefined, mailFrom: 'x <x@example.com>', devMailbox: true });
      await Promise.all(
        [1, 2, 3].map(() =>
          sendEventEmails(e.database.db, mailer, { heartbeatSeconds: 15, smtpConcurrency: 4 }, found.eventId!),
        ),
      );
      const box = await e.client.ok(endpoints.listMailbox, { token: e.adminToken, query: { limit: 100 } });
      assert.equal(box.data.filter((m) => m.eventId === found.eventId).length, 1);
      assert.equal((await e.client.call(endpoints.listMailbox, { token: bob.token })).status, 403);

      // Paginated, newest first.
      await order(e, bob.token, 'tok_declined');
      await waitFor('the second mail', async () =>
        (await e.client.ok(endpoints.listMailbox, { token: e.adminToken, query: { limit: 100 } })).data.filter(
          (m) => m.to === bob.email,
        ).length === 2
          ? true
          : undefined,
      );
      const page1 = await e.client.ok(endpoints.listMailbox, { token: e.adminToken, query: { limit: 1 } });
      const page2 = await e.client.ok(endpoints.listMailbox, {
        token: e.adminToken,
        query: { limit: 1, cursor: page1.nextCursor! },
      });
      assert.equal(page1.data[0]!.kind, 'payment_failed');
      assert.equal(page2.data[0]!.kind, 'order_confirmation');
    });

    it('an order paid makes exactly one email, found by the email reader in the outbox and delivered', async () => {
      const e = env();
      const olga = await customer(e, 'Once Olga');
      const o = await order(e, olga.token, 'tok_ok');
      const eventId = await eventOf(e.database.db, 'order.paid', "data->'order'->>'id'", o.id);
      await jobCompleted(e.database.db, eventId);
      assert.ok(await readerPassed(e.database.db, eventId));
      const mails = (
        await e.client.ok(endpoints.listMailbox, { token: e.adminToken, query: { limit: 100 } })
      ).data.filter((m) => m.to === olga.email);
      assert.deepEqual(
        mails.map((m) => [m.kind, m.eventId, Boolean(m.sentAt)]),
        [['order_confirmation', eventId, true]],
      );
      assert.equal(await jobsOf(e.database.db, eventId), 1, 'one job for the event');
    });

    it('the email reader reading an event again mails nothing twice: its job is not enqueued again, and a job run again sends nothing', async () => {
      const e = env();
      const rex = await customer(e, 'Reread Rex');
      const o = await order(e, rex.token, 'tok_ok');
      const eventId = await eventOf(e.database.db, 'order.paid', "data->'order'->>'id'", o.id);
      await jobCompleted(e.database.db, eventId);
      const db = e.database.db;
      // Read again (a position moved back): the job, still in the queue's table, keeps its key.
      await readerBefore(db, eventId);
      await waitFor('the reader past the event again', async () =>
        (await readerPassed(db, eventId)) ? true : undefined,
      );
      assert.equal(await jobsOf(db, eventId), 1, 'the job of the event is not enqueued again');
      // Read again once the queue has dropped the finished job: a new job runs, and sends nothing.
      await db.query("DELETE FROM pgboss.job WHERE name = $1 AND data->>'eventId' = $2", [emailQueue, eventId]);
      await db.query("DELETE FROM pgboss.archive WHERE name = $1 AND data->>'eventId' = $2", [emailQueue, eventId]);
      await readerBefore(db, eventId);
      await jobCompleted(db, eventId);
      const mails = (
        await e.client.ok(endpoints.listMailbox, { token: e.adminToken, query: { limit: 100 } })
      ).data.filter((m) => m.to === rex.email);
      assert.deepEqual(
        mails.map((m) => m.eventId),
        [eventId],
        'one email',
      );
    });
  },
  {},
  { workers: true },
);

forEachEngine('the email reader of order events (no workers: each step driven here)', (env) => {
  /** db, with the statement that moves the email reader's position failing: a crash after the enqueue. */
  function crashingBeforeTheMove(db: Db): Db {
    return {
      ...db,
      transaction: (fn) =>
        db.transaction((tx) =>
          fn({
            ...tx,
            query: async <T>(text: string, params?: readonly unknown[]) => {
              if (/^UPDATE email_outbox_cursor/.test(text)) throw new Error('crashed before moving the position');
              return tx.query<T>(text, params);
            },
          } as Tx),
        ),
    };
  }

  it('a crash between enqueueing and moving the position enqueues nothing; the next read enqueues one job, a read again none', async () => {
    const e = env();
    const db = e.database.db;
    const pia = await customer(e, 'Paid Pia');
    const placed = {
      id: 'ord_reader',
      customerId: pia.id,
      lines: [{ sku: 'MAIL-1', quantity: 1, total: { amount: 500, currency: 'EUR' } }],
      total: { amount: 500, currency: 'EUR' },
    };
    const paid = await db.transaction((tx) => publishEvent(tx, 'order.paid', { order: placed }, [pia.id]));
    const created = await db.transaction((tx) => publishEvent(tx, 'order.created', { order: placed }, [pia.id]));
    await waitFor('the events below the horizon', async () => {
      const [row] = await db.query<{ below: boolean }>(
        'SELECT tx < pg_snapshot_xmin(pg_current_snapshot()) AS below FROM events WHERE id = $1',
        [created.id],
      );
      return row?.below ? true : undefined;
    });

    await assert.rejects(readOrderEventEmails(crashingBeforeTheMove(db)), /crashed before moving the position/);
    assert.equal(await jobsOf(db, paid.id), 0, 'the job went with the crashed transaction');
    assert.equal(await readerPassed(db, paid.id), false);

    await waitFor('the reader past the events', async () => {
      await readOrderEventEmails(db);
      return (await readerPassed(db, created.id)) ? true : undefined;
    });
    assert.equal(await jobsOf(db, paid.id), 1);
    assert.equal(await jobsOf(db, created.id), 0, 'order.created mails nobody');
    await readerBefore(db, paid.id);
    assert.ok((await readOrderEventEmails(db)).events >= 2);
    assert.equal(await jobsOf(db, paid.id), 1, 'read again: the job is keyed by its event');
    assert.equal(await readerPassed(db, created.id), true);

    const mailer = createMailer({ smtpUrl: undefined, devMailbox: true, mailFrom: 'x <x@example.com>' });
    for (let i = 0; i < 2; i++)
      await sendEventEmails(db, mailer, { heartbeatSeconds: 15, smtpConcurrency: 1 }, paid.id);
    const emails = await db.query<{ kind: string; status: string }>(
      'SELECT kind, status FROM emails WHERE event_id = $1',
      [paid.id],
    );
    assert.deepEqual(emails, [{ kind: 'order_confirmation', status: 'sent' }]);
  });
});

it('templates: escaping, one-line subjects, money without floats', () => {
  assert.equal(escapeHtml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  const inner = html`<i>${'<b>'}</i>`;
  assert.equal(html`<p>${inner}${['<', html`<br>`]}</p>`.safeHtml, '<p><i>&lt;b&gt;</i>&lt;<br></p>');
  assert.equal(oneLine('a\r\nBcc: evil@example.com'), 'a Bcc: evil@example.com');
  assert.equal(formatMoney({ amount: 123456789, currency: 'EUR' }), '1,234,567.89 EUR');
  assert.equal(formatMoney({ amount: 5, currency: 'USD' }), '0.05 USD');
  assert.equal(formatMoney({ amount: 1500, currency: 'JPY' }), '1,500 JPY');
});
