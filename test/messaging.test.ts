import { it } from 'node:test';
import assert from 'node:assert/strict';
import { forEachEngine, injectTransport, type TestEnv } from './support/app.ts';
import { createClient, endpoints } from '../src/client.ts';
import { buildApp } from '../src/app.ts';
import { newId } from '../src/platform/ids.ts';

let keys = 0;

async function paidLessOrder(e: TestEnv, token: string) {
  return e.client.ok(endpoints.placeOrder, {
    token,
    idempotencyKey: `msg-order-${++keys}`,
    body: { lines: [{ sku: 'MSG-TEE', quantity: 1 }], payment: { method: 'card', token: 'tok_ok' } },
  });
}

async function open(
  e: TestEnv,
  token: string,
  body = 'Hello, where is my parcel?',
  extra: { orderId?: string; subject?: string } = {},
) {
  return e.client.ok(endpoints.openConversation, {
    token,
    body: { subject: extra.subject ?? 'Delivery', body, ...(extra.orderId ? { orderId: extra.orderId } : {}) },
  });
}

async function staffUser(e: TestEnv) {
  const s = await e.customer('Staff Member');
  await e.client.ok(endpoints.updateUser, { token: e.adminToken, params: { id: s.id }, body: { role: 'staff' } });
  return s;
}

forEachEngine('messaging: conversations and messages', 'one', (env) => {
  it("a customer opens a conversation, optionally about their own order; another's order is 404", async () => {
    const e = env();
    await e.product([{ sku: 'MSG-TEE', stock: 100 }]);
    const alice = await e.customer('Alice');
    const bob = await e.customer('Bob');
    const order = await paidLessOrder(e, alice.token);

    const plain = await open(e, alice.token);
    assert.match(plain.id, /^cnv_[0-9a-z]{26}$/);
    assert.equal(plain.customerId, alice.id);
    assert.equal(plain.orderId, null);
    assert.equal(plain.subject, 'Delivery');
    assert.equal(plain.unreadCount, 0, 'the opener has read their own first message');
    assert.equal(plain.lastMessage?.body, 'Hello, where is my parcel?');
    assert.equal(plain.lastMessage?.authorId, alice.id);
    assert.equal(plain.lastMessage?.fromStaff, false);
    assert.match(plain.lastMessage!.id, /^msg_/);

    const about = await open(e, alice.token, 'About this order', { orderId: order.id });
    assert.equal(about.orderId, order.id);

    const someoneElses = await e.client.call(endpoints.openConversation, {
      token: bob.token,
      body: { subject: 'Hi', orderId: order.id, body: 'x' },
    });
    const missing = await e.client.call(endpoints.openConversation, {
      token: bob.token,
      body: { subject: 'Hi', orderId: newId('ord'), body: 'x' },
    });
    assert.equal(someoneElses.status, 404);
    assert.equal(missing.status, 404);
    assert.deepEqual(
      someoneElses.body,
      missing.body,
      "another customer's order answers exactly like one that does not exist",
    );
    const bobs = await e.client.ok(endpoints.listConversations, { token: bob.token });
    assert.deepEqual(bobs.data, [], 'the refused requests opened nothing');
  });

  it('only customers open conversations; staff answer them', async () => {
    const e = env();
    const res = await e.client.call(endpoints.openConversation, {
      token: e.adminToken,
      body: { subject: 'Hi', body: 'x' },
    });
    assert.equal(res.status, 403);
  });

  it("a customer can neither read nor post in another's conversation, nor learn that it exists", async () => {
    const e = env();
    const alice = await e.customer('Alice');
    const mallory = await e.customer('Mallory');
    const theirs = await open(e, alice.token, 'private');
    const nowhere = newId('cnv');

    const probes = [
      (id: string) => e.client.call(endpoints.getConversation, { token: mallory.token, params: { id } }),
      (id: string) => e.client.call(endpoints.listMessages, { token: mallory.token, params: { id } }),
      (id: string) =>
        e.client.call(endpoints.postMessage, { token: mallory.token, params: { id }, body: { body: 'let me in' } }),
      (id: string) =>
        e.client.call(endpoints.postMessage, {
          token: mallory.token,
          params: { id },
          body: { body: 'let me in' },
          idempotencyKey: `probe-${id}`,
        }),
      (id: string) => e.client.call(endpoints.markConversationRead, { token: mallory.token, params: { id }, body: {} }),
    ];
    for (const probe of probes) {
      const real = await probe(theirs.id);
      const fake = await probe(nowhere);
      assert.equal(real.status, 404);
      assert.deepEqual(real.body, fake.body, 'the same answer as for an id that does not exist');
      assert.equal(real.headers['content-type'], fake.headers['content-type']);
    }
    const list = await e.client.ok(endpoints.listConversations, { token: mallory.token });
    assert.ok(!list.data.some((c) => c.id === theirs.id));
    const messages = await e.client.ok(endpoints.listMessages, { token: alice.token, params: { id: theirs.id } });
    assert.deepEqual(
      messages.data.map((m) => m.body),
      ['private'],
      'nothing was posted by the probes',
    );
    const [row] = await e.database.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM events WHERE type = 'message.created' AND data->'conversation'->>'id' = $1",
      [theirs.id],
    );
    assert.equal(row!.n, 1, 'and no event was published');

    // Staff see and answer every conversation.
    const staff = await staffUser(e);
    assert.equal(
      (await e.client.ok(endpoints.getConversation, { token: staff.token, params: { id: theirs.id } })).id,
      theirs.id,
    );
    const answer = await e.client.ok(endpoints.postMessage, {
      token: staff.token,
      params: { id: theirs.id },
      body: { body: 'We are on it' },
    });
    assert.equal(answer.fromStaff, true);
    const all = await e.client.ok(endpoints.listConversations, { token: staff.token, query: { limit: 100 } });
    assert.ok(all.data.some((c) => c.id === theirs.id));

    // The dev mailbox is for admins only (test/messaging-dev-mailbox.test.ts).
    assert.equal((await e.client.call(endpoints.listMailbox, { token: alice.token })).status, 403);
    assert.equal((await e.client.call(endpoints.listMailbox, { token: staff.token })).status, 403);
  });

  it('messages are stored and returned exactly as written, oldest first, paginated', async () => {
    const e = env();
    const alice = await e.customer();
    const bodies = [
      '<script>alert("x")</script> & <b>bold</b>',
      '  leading and trailing spaces  \n\nand a blank line\r\nwith CRLF\t',
      'émoji 😀 and ﷽ and zero\u200bwidth',
      'plain',
      '{"json": true}',
    ];
    const c = await open(e, alice.token, bodies[0]);
    for (const body of bodies.slice(1))
      await e.client.ok(endpoints.postMessage, { token: alice.token, params: { id: c.id }, body: { body } });

    const seen: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 10; page++) {
      const res = await e.client.ok(endpoints.listMessages, {
        token: alice.token,
        params: { id: c.id },
        query: { limit: 2, ...(cursor ? { cursor } : {}) },
      });
      seen.push(...res.data.map((m) => m.body));
      for (const m of res.data) assert.equal(m.conversationId, c.id);
      if (!res.nextCursor) break;
      cursor = res.nextCursor;
    }
    assert.deepEqual(seen, bodies);
    const raw = await e.app.inject({
      method: 'GET',
      url: `/v1/conversations/${c.id}/messages`,
      headers: { authorization: `Bearer ${alice.token}` },
    });
    assert.match(String(raw.headers['content-type']), /^application\/json/, 'returned as data, never as HTML');
  });

  it('a message is 1 to 10 000 characters of text, not blank', async () => {
    const e = env();
    const alice = await e.customer();
    const c = await open(e, alice.token);
    const post = (body: string) =>
      e.client.call(endpoints.postMessage, { token: alice.token, params: { id: c.id }, body: { body } });

    assert.equal((await post('x'.repeat(10_000))).status, 201);
    assert.equal((await post('😀'.repeat(10_000))).status, 201, 'counted in characters, not UTF-16 units or bytes');
    for (const bad of ['', '   \n\t ', 'x'.repeat(10_001), 'nul \u0000 inside', 'lone \ud800 surrogate']) {
      const res = await post(bad);
      assert.equal(res.status, 400, JSON.stringify(bad.slice(0, 20)));
      assert.equal(res.body.code, 'validation_failed');
      assert.ok(!res.ok && res.body.errors?.some((x) => x.path === '/body'), JSON.stringify(res.body));
    }
    const long = await e.client.call(endpoints.openConversation, {
      token: alice.token,
      body: { subject: 's'.repeat(201), body: 'x' },
    });
    assert.equal(long.status, 400);
    const twoLines = await e.client.call(endpoints.openConversation, {
      token: alice.token,
      body: { subject: 'a\r\nBcc: x@evil.example', body: 'x' },
    });
    assert.equal(twoLines.status, 400, 'a subject is one line');
    const stored = await e.client.ok(endpoints.listMessages, {
      token: alice.token,
      params: { id: c.id },
      query: { limit: 100 },
    });
    assert.equal(stored.data.length, 3);
    assert.equal(stored.data[2]!.body, '😀'.repeat(10_000));
  });

  it('posting with an Idempotency-Key never posts twice', async () => {
    const e = env();
    const alice = await e.customer();
    const c = await open(e, alice.token);
    const send = (body: string) =>
      e.client.call(endpoints.postMessage, {
        token: alice.token,
        params: { id: c.id },
        body: { body },
        idempotencyKey: 'send-once',
      });
    const first = await send('only once');
    const again = await send('only once');
    assert.equal(first.status, 201);
    assert.equal(again.status, 201);
    assert.deepEqual(again.body, first.body);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    const [both1, both2] = await Promise.all([
      e.client.call(endpoints.postMessage, {
        token: alice.token,
        params: { id: c.id },
        body: { body: 'racing' },
        idempotencyKey: 'race',
      }),
      e.client.call(endpoints.postMessage, {
        token: alice.token,
        params: { id: c.id },
        body: { body: 'racing' },
        idempotencyKey: 'race',
      }),
    ]);
    assert.ok(both1.status === 201 || both1.status === 409, String(both1.status));
    assert.ok(both2.status === 201 || both2.status === 409, String(both2.status));
    const reused = await send('something else');
    assert.equal(reused.status, 422);
    assert.equal(reused.body.code, 'idempotency_key_reused');

    const messages = await e.client.ok(endpoints.listMessages, {
      token: alice.token,
      params: { id: c.id },
      query: { limit: 100 },
    });
    assert.deepEqual(
      messages.data.map((m) => m.body),
      ['Hello, where is my parcel?', 'only once', 'racing'],
    );
    const [row] = await e.database.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM events WHERE type = 'message.created' AND data->'conversation'->>'id' = $1",
      [c.id],
    );
    assert.equal(row!.n, 3, 'one event per message');
  });

  it('read state is per participant; unread counts in the list', async () => {
    const e = env();
    const alice = await e.customer();
    const staff1 = await staffUser(e);
    const staff2 = await staffUser(e);
    const c = await open(e, alice.token, 'first');
    const m2 = await e.client.ok(endpoints.postMessage, {
      token: alice.token,
      params: { id: c.id },
      body: { body: 'second' },
    });

    const unreadFor = async (token: string) => {
      const list = await e.client.ok(endpoints.listConversations, { token, query: { limit: 100 } });
      return list.data.find((x) => x.id === c.id)!.unreadCount;
    };
    assert.equal(await unreadFor(alice.token), 0);
    assert.equal(await unreadFor(staff1.token), 2);
    assert.equal(await unreadFor(staff2.token), 2);

    const firstId = (await e.client.ok(endpoints.listMessages, { token: staff1.token, params: { id: c.id } })).data[0]!
      .id;
    const partial = await e.client.ok(endpoints.markConversationRead, {
      token: staff1.token,
      params: { id: c.id },
      body: { messageId: firstId },
    });
    assert.deepEqual(partial, { conversationId: c.id, lastReadMessageId: firstId, unreadCount: 1 });
    const all = await e.client.ok(endpoints.markConversationRead, {
      token: staff1.token,
      params: { id: c.id },
      body: {},
    });
    assert.deepEqual(all, { conversationId: c.id, lastReadMessageId: m2.id, unreadCount: 0 });
    const back = await e.client.ok(endpoints.markConversationRead, {
      token: staff1.token,
      params: { id: c.id },
      body: { messageId: firstId },
    });
    assert.equal(back.lastReadMessageId, m2.id, 'the read position never moves back');
    assert.equal(await unreadFor(staff1.token), 0);
    assert.equal(await unreadFor(staff2.token), 2, 'each staff member has their own read state');

    await e.client.ok(endpoints.postMessage, { token: staff2.token, params: { id: c.id }, body: { body: 'answer' } });
    assert.equal(await unreadFor(staff2.token), 0, 'writing marks read for the author');
    assert.equal(await unreadFor(staff1.token), 1);
    assert.equal(await unreadFor(alice.token), 1);
    assert.equal(
      (await e.client.ok(endpoints.getConversation, { token: alice.token, params: { id: c.id } })).unreadCount,
      1,
    );
    const bare = await e.app.inject({
      method: 'POST',
      url: `/v1/conversations/${c.id}/read`,
      headers: { authorization: `Bearer ${alice.token}` },
    });
    assert.equal(bare.statusCode, 200, 'the body may be left out');
    assert.equal(await unreadFor(alice.token), 0);

    const other = await open(e, (await e.customer()).token, 'elsewhere');
    const wrong = await e.client.call(endpoints.markConversationRead, {
      token: staff1.token,
      params: { id: c.id },
      body: { messageId: other.lastMessage!.id },
    });
    assert.equal(wrong.status, 404, 'a message of another conversation is not a read position here');
  });

  it('conversations list newest first with cursor pagination; a customer sees only their own', async () => {
    const e = env();
    const carol = await e.customer();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await open(e, carol.token, `n${i}`, { subject: `Subject ${i}` })).id);
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 10; page++) {
      const res = await e.client.ok(endpoints.listConversations, {
        token: carol.token,
        query: { limit: 2, ...(cursor ? { cursor } : {}) },
      });
      seen.push(...res.data.map((c) => c.id));
      if (!res.nextCursor) break;
      cursor = res.nextCursor;
    }
    assert.deepEqual(seen, [...ids].reverse());
  });

  it('every new message publishes message.created for the customer and all staff', async () => {
    const e = env();
    const alice = await e.customer();
    const c = await open(e, alice.token, 'event please');
    const [event] = await e.database.db.query<{
      audience: string[];
      data: {
        message: { id: string; body: string; conversationId: string };
        conversation: { id: string; customerId: string };
      };
    }>("SELECT audience, data FROM events WHERE type = 'message.created' AND data->'conversation'->>'id' = $1", [c.id]);
    assert.deepEqual(event!.audience, [alice.id, 'role:staff']);
    assert.equal(event!.data.message.body, 'event please');
    assert.equal(event!.data.message.id, c.lastMessage!.id);
    assert.equal(event!.data.conversation.customerId, alice.id);
  });
});

forEachEngine(
  'messaging: sending is rate limited per user, in the database',
  'one',
  (env) => {
    it('beyond the limit: 429 rate_limited with Retry-After, nothing stored; others unaffected; across app instances', async () => {
      const e = env();
      const alice = await e.customer();
      const bob = await e.customer();
      const c = await open(e, alice.token, 'one'); // opening counts
      for (const body of ['two', 'three'])
        assert.equal(
          (await e.client.call(endpoints.postMessage, { token: alice.token, params: { id: c.id }, body: { body } }))
            .status,
          201,
        );
      const refused = await e.client.call(endpoints.postMessage, {
        token: alice.token,
        params: { id: c.id },
        body: { body: 'four' },
        idempotencyKey: 'limited',
      });
      assert.equal(refused.status, 429);
      assert.equal(refused.body.code, 'rate_limited');
      const retryAfter = Number(refused.headers['retry-after']);
      assert.ok(
        Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 3600,
        `Retry-After ${refused.headers['retry-after']}`,
      );
      assert.equal(
        (await e.client.call(endpoints.openConversation, { token: alice.token, body: { subject: 's', body: 'b' } }))
          .status,
        429,
      );

      // The allowance lives in the database: another app instance on it refuses too.
      const second = await buildApp(e.config, e.database.db, { logStream: { write: () => {} } });
      try {
        const other = createClient(injectTransport(second));
        assert.equal(
          (
            await other.call(endpoints.postMessage, {
              token: alice.token,
              params: { id: c.id },
              body: { body: 'five' },
            })
          ).status,
          429,
        );
      } finally {
        await second.close();
      }
      assert.equal((await open(e, bob.token, 'bob is fine')).customerId, bob.id);
      const messages = await e.client.ok(endpoints.listMessages, { token: alice.token, params: { id: c.id } });
      assert.deepEqual(
        messages.data.map((m) => m.body),
        ['one', 'two', 'three'],
      );
      const [key] = await e.database.db.query("SELECT 1 FROM idempotency_keys WHERE key_hash = sha256('limited')");
      assert.equal(key, undefined, 'a refused request stores no idempotency key');
    });
  },
  { MESSAGE_RATE_LIMIT: '3', MESSAGE_RATE_WINDOW_SECONDS: '3600' },
);
