import { it, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { forEachEngine, type TestEnv } from './support/app.ts';
import { waitFor } from './support/wait.ts';
import { endpoints } from '../src/client.ts';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { openPostgres, type Db } from '../src/platform/db.ts';
import { publishEvent } from '../src/platform/events.ts';
import { newId } from '../src/platform/ids.ts';
import { createEventHub, listenerFor } from '../src/platform/event-stream.ts';
import { framesOf, memorySink, presenceOf, settled, watchOutboxReads } from './support/event-hub.ts';
import { openEventStream, type EventStreamReader, type SseEvent } from './support/event-source.ts';
import { unthrottled } from './support/unthrottled.ts';

const quiet = { logStream: { write: () => {} } };
const testEnv = {
  LOG_LEVEL: 'info',
  SECURE_COOKIES: 'false',
  WORKER_POLL_INTERVAL_MS: '100',
  EVENT_STREAM_HEARTBEAT_SECONDS: '1',
  ...unthrottled,
};

interface Payload {
  id: string;
  type: string;
  createdAt: string;
  data: Record<string, unknown> & {
    message?: { id: string; body: string; conversationId: string };
    order?: { id: string; status: string };
  };
}

function payload(e: SseEvent): Payload {
  return JSON.parse(e.data) as Payload;
}

const isType =
  (type: string, extra: (p: Payload) => boolean = () => true) =>
  (e: SseEvent) =>
    e.event === type && extra(payload(e));
const isMessage = (body: string) => isType('message.created', (p) => p.data.message?.body === body);

/** Opens /v1/events and waits for its `ready` frame, so that what follows is live. */
async function stream(
  base: string,
  token: string,
  headers: Record<string, string> = {},
): Promise<{ reader: EventStreamReader; ready: { resumed: boolean; replayed: number }; before: SseEvent[] }> {
  const reader = await openEventStream(`${base}/v1/events`, { authorization: `Bearer ${token}`, ...headers });
  assert.equal(reader.status, 200);
  const readyFrame = await reader.next((e) => e.event === 'ready');
  const before = reader.events.slice(0, reader.events.indexOf(readyFrame));
  return { reader, ready: JSON.parse(readyFrame.data), before };
}

function staffPost(e: TestEnv, conversationId: string, body: string) {
  return e.client.ok(endpoints.postMessage, { token: e.adminToken, params: { id: conversationId }, body: { body } });
}

async function eventIdOfMessage(db: Db, messageId: string): Promise<string> {
  const [row] = await db.query<{ id: string }>(
    "SELECT id FROM events WHERE type = 'message.created' AND data->'message'->>'id' = $1",
    [messageId],
  );
  return row!.id;
}

forEachEngine(
  'the live event stream (GET /v1/events)',
  'parity',
  (env) => {
    let base: string | undefined;
    const readers: EventStreamReader[] = [];
    const url = async () => (base ??= await env().app.listen({ port: 0, host: '127.0.0.1' }));
    const track = <T extends { reader: EventStreamReader }>(s: T): T => {
      readers.push(s.reader);
      return s;
    };

    it('answers 401 without a signed-in user, and streams text/event-stream with one', async () => {
      const e = env();
      const anonymous = await fetch(`${await url()}/v1/events`);
      assert.equal(anonymous.status, 401);
      assert.match(String(anonymous.headers.get('content-type')), /^application\/problem\+json/);
      const alice = await e.customer();
      const s = track(await stream(await url(), alice.token));
      assert.match(s.reader.contentType, /^text\/event-stream/);
      assert.deepEqual(s.ready, { resumed: false, replayed: 0 });
      s.reader.close();
    });

    it('works with the session cookie (EventSource cannot send headers)', async () => {
      const e = env();
      const c = await e.customer();
      const login = await e.client.call(endpoints.login, {
        body: { email: c.email, password: 'correct horse battery staple' },
      });
      const cookie = /er_session=[^;]+/.exec(String(login.headers['set-cookie']))![0];
      const reader = await openEventStream(`${await url()}/v1/events`, { cookie });
      readers.push(reader);
      assert.equal(reader.status, 200);
      await reader.next((x) => x.event === 'ready');
      reader.close();
    });

    it("delivers the customer's order.created and then order.paid once the worker charges it", async () => {
      const e = env();
      await e.product([{ sku: 'SSE-1', stock: 100, amount: 1500 }]);
      const alice = await e.customer();
      const s = track(await stream(await url(), alice.token));
      const order = await e.client.ok(endpoints.placeOrder, {
        token: alice.token,
        idempotencyKey: 'sse-order-1',
        body: { lines: [{ sku: 'SSE-1', quantity: 2 }], payment: { method: 'card', token: 'tok_ok' } },
      });
      const paid = await s.reader.next(isType('order.paid', (p) => p.data.order?.id === order.id));
      const p = payload(paid);
      assert.equal(paid.id, p.id, 'the SSE id is the event id');
      assert.match(p.id, /^evt_[0-9a-z]{26}$/);
      assert.equal(p.data.order!.status, 'paid');
      const types = s.reader.events.filter((x) => x.event.startsWith('order.')).map((x) => x.event);
      assert.deepEqual(types, ['order.created', 'order.paid']);
      s.reader.close();
    });

    it('delivers messages: staff replies to the customer, customer messages to staff, and nothing to anyone else', async () => {
      const e = env();
      const alice = await e.customer();
      const mallory = await e.customer();
      const a = track(await stream(await url(), alice.token));
      const staff = track(await stream(await url(), e.adminToken));
      const m = track(await stream(await url(), mallory.token));

      const c = await e.client.ok(endpoints.openConversation, {
        token: alice.token,
        body: { subject: 'Help', body: 'hello from alice' },
      });
      const toStaff = payload(await staff.reader.next(isMessage('hello from alice')));
      assert.equal(toStaff.data.message!.conversationId, c.id);
      await staffPost(e, c.id, 'hello from the shop <b>&</b>');
      const toAlice = payload(await a.reader.next(isMessage('hello from the shop <b>&</b>')));
      assert.equal(toAlice.type, 'message.created');
      assert.equal((toAlice.data.message as unknown as { fromStaff: boolean }).fromStaff, true);

      // Mallory's own event comes after Alice's in the outbox, so by the time it arrives, Alice's
      // would have, had it been sent to her.
      await e.client.ok(endpoints.openConversation, {
        token: mallory.token,
        body: { subject: 'Mine', body: 'mallory marker' },
      });
      await m.reader.next(isMessage('mallory marker'));
      assert.deepEqual(
        m.reader.events.filter((x) => x.event === 'message.created').map((x) => payload(x).data.message!.body),
        ['mallory marker'],
      );
      for (const s of [a, staff, m]) s.reader.close();
    });

    it('a rolled-back event is never sent', async () => {
      const e = env();
      const alice = await e.customer();
      const s = track(await stream(await url(), alice.token));
      await assert.rejects(
        e.database.db.transaction(async (tx) => {
          await publishEvent(tx, 'test.rolled_back', { n: 1 }, [alice.id]);
          throw new Error('roll it back');
        }),
      );
      await e.database.db.transaction((tx) => publishEvent(tx, 'test.committed', { n: 2 }, [alice.id]));
      await s.reader.next(isType('test.committed'));
      assert.deepEqual(
        s.reader.events.map((x) => x.event),
        ['ready', 'test.committed'],
      );
      s.reader.close();
    });

    it('reconnecting with Last-Event-ID replays exactly the missed events, then goes live', async () => {
      const e = env();
      const alice = await e.customer();
      const bob = await e.customer();
      const c = await e.client.ok(endpoints.openConversation, {
        token: alice.token,
        body: { subject: 'Replay', body: 'start' },
      });
      const first = track(await stream(await url(), alice.token));
      await staffPost(e, c.id, 'm1');
      const seen = await first.reader.next(isMessage('m1'));
      first.reader.close();
      await first.reader.ended;

      await staffPost(e, c.id, 'm2');
      await e.client.ok(endpoints.openConversation, { token: bob.token, body: { subject: 'Not hers', body: 'bob' } });
      const m3 = await staffPost(e, c.id, 'm3');
      await settled(e.database.db, await eventIdOfMessage(e.database.db, m3.id));

      const second = track(await stream(await url(), alice.token, { 'last-event-id': seen.id! }));
      assert.deepEqual(second.ready, { resumed: true, replayed: 2 });
      assert.deepEqual(
        second.before.map((x) => payload(x).data.message!.body),
        ['m2', 'm3'],
      );
      await staffPost(e, c.id, 'm4');
      await second.reader.next(isMessage('m4'));
      assert.deepEqual(
        second.reader.events.filter((x) => x.event === 'message.created').map((x) => payload(x).data.message!.body),
        ['m2', 'm3', 'm4'],
        'no duplicate between replay and live',
      );
      const last = second.reader.lastEventId!;
      second.reader.close();

      // Nothing missed since: nothing replayed (the query parameter works as the header does).
      const third = track(await stream(await url(), alice.token, {}));
      third.reader.close();
      const fourth = await openEventStream(`${await url()}/v1/events?lastEventId=${last}`, {
        authorization: `Bearer ${alice.token}`,
      });
      readers.push(fourth);
      assert.deepEqual(JSON.parse((await fourth.next((x) => x.event === 'ready')).data), {
        resumed: true,
        replayed: 0,
      });
      fourth.close();
    });

    it('says resumed: false when Last-Event-ID is unknown or older than the retention window', async () => {
      const e = env();
      const alice = await e.customer();
      for (const id of ['evt_00000000000000000000000000', 'not-an-id']) {
        const s = track(await stream(await url(), alice.token, { 'last-event-id': id }));
        assert.deepEqual(s.ready, { resumed: false, replayed: 0 });
        s.reader.close();
      }
      const old = await e.database.db.transaction((tx) => publishEvent(tx, 'test.old', {}, [alice.id]));
      await e.database.db.query("UPDATE events SET created_at = now() - interval '25 hours' WHERE id = $1", [old.id]);
      const s = track(await stream(await url(), alice.token, { 'last-event-id': old.id }));
      assert.deepEqual(s.ready, { resumed: false, replayed: 0 });
      s.reader.close();
    });

    it('a long replay waits for the reader rather than buffering it all, or dropping it', async () => {
      const e = env();
      const reader = await e.customer();
      const first = await e.database.db.transaction((tx) => publishEvent(tx, 'test.start', {}, [reader.id]));
      // 8 MB of missed events: more than the socket buffers and the 1 MiB bound together.
      const ids = Array.from({ length: 4000 }, () => newId('evt'));
      await e.database.db.query(
        "INSERT INTO events (id, type, audience, data) SELECT id, 'test.bulk', ARRAY[$2], jsonb_build_object('pad', repeat('x', 2000)) FROM unnest($1::text[]) AS id",
        [ids, reader.id],
      );
      await settled(e.database.db, ids[ids.length - 1]!);
      const s = track(await stream(await url(), reader.token, { 'last-event-id': first.id }));
      assert.deepEqual(s.ready, { resumed: true, replayed: ids.length });
      assert.deepEqual(
        s.before.map((x) => x.id),
        ids,
      );
      s.reader.close();
    });

    it('sends heartbeats on an idle stream', async () => {
      const e = env();
      const s = track(await stream(await url(), (await e.customer()).token));
      await waitFor('a heartbeat comment', async () => (s.reader.comments.includes('ping') ? true : undefined), 10_000);
      s.reader.close();
    });

    it('records presence while a stream is open and forgets it on disconnect', async () => {
      const e = env();
      const alice = await e.customer();
      const s = track(await stream(await url(), alice.token));
      assert.equal(await presenceOf(e.database.db, alice.id), 1);
      s.reader.close();
      await waitFor('the presence row to go', async () =>
        (await presenceOf(e.database.db, alice.id)) === 0 ? true : undefined,
      );
    });

    it('closing the app ends its streams instead of waiting for them', async () => {
      const e = env();
      const alice = await e.customer();
      const app = await buildApp(e.config, e.database.db, quiet);
      const address = await app.listen({ port: 0, host: '127.0.0.1' });
      const s = await stream(address, alice.token);
      await app.close();
      await s.reader.ended;
      assert.equal(await presenceOf(e.database.db, alice.id), 0);
    });

    it('drops a client that does not read instead of buffering for it', async () => {
      const e = env();
      const sink = memorySink({ reads: false });
      const hub = createEventHub(e.database.db, {
        heartbeatSeconds: 60,
        retentionHours: 24,
        listen: listenerFor(e.database.db, undefined),
        pollIntervalMs: 50,
        maxBufferedBytes: 20_000,
      });
      const userId = `usr_slow${Date.now()}`;
      try {
        await hub.open(sink, { userId, keys: [userId] });
        for (let i = 0; i < 40 && !sink.destroyed; i++) {
          await e.database.db.transaction((tx) =>
            publishEvent(tx, 'test.bulk', { n: i, pad: 'x'.repeat(1000) }, [userId]),
          );
        }
        await waitFor('the slow stream to be dropped', async () => (sink.destroyed ? true : undefined));
        assert.ok(sink.buffered < 20_000 + 2000, `stopped buffering at the bound (${sink.buffered} bytes)`);
        assert.equal(hub.stats.open, 0);
      } finally {
        await hub.close();
      }
    });

    it('on PostgreSQL, an event waits for older transactions, so it never overtakes one that commits later', async (t) => {
      const e = env();
      if (e.engine !== 'postgres') return t.skip('concurrent transactions need PostgreSQL');
      const alice = await e.customer();
      // An app whose hub's reads of the outbox the test can count.
      const watched = watchOutboxReads(e.database.db);
      const app = await buildApp(e.config, watched.db, quiet);
      try {
        const s = await stream(await app.listen({ port: 0, host: '127.0.0.1' }), alice.token);
        let release!: () => void;
        const gate = new Promise<void>((resolve) => {
          release = resolve;
        });
        let started!: (id: string) => void;
        const slowId = new Promise<string>((resolve) => {
          started = resolve;
        });
        const slow = e.database.db.transaction(async (tx) => {
          started((await publishEvent(tx, 'test.slow', {}, [alice.id])).id);
          await gate;
        });
        try {
          const slowEvent = await slowId;
          const fast = await e.database.db.transaction((tx) => publishEvent(tx, 'test.fast', {}, [alice.id]));
          assert.ok(slowEvent < fast.id, 'the slow event has the smaller id');
          // Two reads that began after the fast event committed (a read in flight then may finish
          // first; the next begins after it): the hub has seen the committed event, and held it back.
          const seen = watched.reads.finished + 2;
          await waitFor('the hub to read the outbox twice since', async () =>
            watched.reads.finished >= seen ? true : undefined,
          );
          assert.deepEqual(
            s.reader.events.map((x) => x.event),
            ['ready'],
            'nothing overtakes a transaction still running',
          );
        } finally {
          release();
          await slow;
        }
        await s.reader.next(isType('test.fast'));
        assert.deepEqual(
          s.reader.events.map((x) => x.event),
          ['ready', 'test.slow', 'test.fast'],
        );
        s.reader.close();
      } finally {
        await app.close();
      }
    });

    it('on PostgreSQL, a message posted to one app instance reaches a stream on another', async (t) => {
      const e = env();
      if (e.engine !== 'postgres') return t.skip('the embedded database is one process');
      const alice = await e.customer();
      const db2 = openPostgres(e.database.url!, 5);
      let app2: FastifyInstance | undefined;
      try {
        // A second process in all but name: its own pool, its own listening connection (the test app
        // of instance one has DATABASE_URL too, so it listens as well).
        app2 = await buildApp(loadConfig({ ...testEnv, DATABASE_URL: e.database.url! }), db2, quiet);
        const base2 = await app2.listen({ port: 0, host: '127.0.0.1' });
        const c = await e.client.ok(endpoints.openConversation, {
          token: alice.token,
          body: { subject: 'Two', body: 'hi' },
        });
        const onTwo = track(await stream(base2, alice.token));
        const staffOnOne = track(await stream(await url(), e.adminToken));
        // Each listener connects in the background (a slow machine may not have it yet): wait for
        // both, then check that opening streams added none.
        const listeners = async () =>
          (
            await e.database.db.query<{ n: number }>(
              "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN engine_room_events'",
            )
          )[0]!.n;
        await waitFor('both instances to listen', async () => ((await listeners()) >= 2 ? true : undefined));
        assert.equal(
          await listeners(),
          2,
          'each instance listens on one dedicated connection, however many streams it serves',
        );

        await staffPost(e, c.id, 'posted to instance one');
        assert.equal(
          payload(await onTwo.reader.next(isMessage('posted to instance one'))).data.message!.conversationId,
          c.id,
        );

        const res = await app2.inject({
          method: 'POST',
          url: `/v1/conversations/${c.id}/messages`,
          headers: { authorization: `Bearer ${alice.token}`, 'content-type': 'application/json' },
          payload: { body: 'posted to instance two' },
        });
        assert.equal(res.statusCode, 201);
        await staffOnOne.reader.next(isMessage('posted to instance two'));
        await onTwo.reader.next(isMessage('posted to instance two'));
        onTwo.reader.close();
        staffOnOne.reader.close();
      } finally {
        await app2?.close();
        await db2.close();
      }
    });

    it("the ready frame's id is the newest of the user's own events, never another user's; none when the user has none", async () => {
      const e = env();
      const alice = await e.customer();
      const bob = await e.customer();
      const carol = await e.customer();
      const hers = await e.database.db.transaction((tx) => publishEvent(tx, 'test.hers', {}, [alice.id]));
      const his = await e.database.db.transaction((tx) => publishEvent(tx, 'test.his', {}, [bob.id]));
      await settled(e.database.db, his.id);
      for (const [user, expected] of [
        [alice, hers.id],
        [bob, his.id],
        [carol, undefined],
      ] as const) {
        const reader = await openEventStream(`${await url()}/v1/events`, { authorization: `Bearer ${user.token}` });
        readers.push(reader);
        assert.equal((await reader.next((x) => x.event === 'ready')).id, expected);
        reader.close();
      }
    });

    it("HEAD /v1/events answers the stream's headers, without a body, and ends", async () => {
      const e = env();
      const alice = await e.customer();
      // Bounded, so that a HEAD that never ends fails here instead of hanging the suite.
      const res = await fetch(`${await url()}/v1/events`, {
        method: 'HEAD',
        headers: { authorization: `Bearer ${alice.token}` },
        signal: AbortSignal.timeout(15_000),
      });
      assert.equal(res.status, 200);
      assert.match(String(res.headers.get('content-type')), /^text\/event-stream/);
      assert.equal(await res.text(), '');
      assert.equal(await presenceOf(e.database.db, alice.id), 0, 'no stream was opened');
      assert.equal(
        (await fetch(`${await url()}/v1/events`, { method: 'HEAD', signal: AbortSignal.timeout(15_000) })).status,
        401,
      );
    });

    describe('limits: EVENT_STREAM_MAX_PER_USER=2, EVENT_STREAM_MAX_PER_PROCESS=4', () => {
      let limited: FastifyInstance | undefined;
      let base2: string;
      before(async () => {
        const e = env();
        const config = loadConfig({
          ...testEnv,
          ...(e.database.url ? { DATABASE_URL: e.database.url } : {}),
          EVENT_STREAM_MAX_PER_USER: '2',
          EVENT_STREAM_MAX_PER_PROCESS: '4',
        });
        limited = await buildApp(config, e.database.db, quiet);
        base2 = await limited.listen({ port: 0, host: '127.0.0.1' });
      });
      after(async () => {
        await limited?.close();
      });

      const refusal = async (token: string, method = 'GET') => {
        const res = await fetch(`${base2}/v1/events`, { method, headers: { authorization: `Bearer ${token}` } });
        assert.equal(res.status, 429);
        assert.match(String(res.headers.get('content-type')), /^application\/problem\+json/);
        assert.equal(res.headers.get('retry-after'), '10');
        return method === 'HEAD' ? undefined : ((await res.json()) as { code: string; detail: string });
      };

      it("a user's third stream gets 429 rate_limited with Retry-After while another user still connects; closing one frees a place; the process's fifth gets 429 too", async () => {
        const e = env();
        const [alice, bob, carol, dave] = await e.customers(4);
        const a1 = track(await stream(base2, alice!.token));
        const a2 = track(await stream(base2, alice!.token));
        const third = await refusal(alice!.token);
        assert.equal(third!.code, 'rate_limited');
        assert.match(third!.detail, /You have 2 live event streams open/);
        await refusal(alice!.token, 'HEAD');
        const b1 = track(await stream(base2, bob!.token));

        a1.reader.close();
        await waitFor("alice's closed stream to be gone", async () =>
          (await presenceOf(e.database.db, alice!.id)) === 1 ? true : undefined,
        );
        const a3 = track(await stream(base2, alice!.token));

        const c1 = track(await stream(base2, carol!.token)); // the fourth stream of the process
        const fifth = await refusal(dave!.token);
        assert.match(fifth!.detail, /This server holds as many live event streams as it may/);
        c1.reader.close();
        await waitFor("carol's stream to be gone", async () =>
          (await presenceOf(e.database.db, carol!.id)) === 0 ? true : undefined,
        );
        const d1 = track(await stream(base2, dave!.token));
        for (const x of [a2, a3, b1, d1]) x.reader.close();
        await waitFor('every stream to be gone', async () => {
          const [row] = await e.database.db.query<{ n: number }>(
            'SELECT count(*)::int AS n FROM event_stream_connections WHERE user_id = ANY($1)',
            [[alice!.id, bob!.id, dave!.id]],
          );
          return row!.n === 0 ? true : undefined;
        });
      });

      it("a user's streams opened all at once cannot all pass the limit: 2 of 20 are admitted", async () => {
        const e = env();
        const [erin] = await e.customers(1);
        const opened = await Promise.all(
          Array.from({ length: 20 }, () =>
            openEventStream(`${base2}/v1/events`, { authorization: `Bearer ${erin!.token}` }),
          ),
        );
        readers.push(...opened);
        assert.deepEqual(opened.map((r) => r.status).sort(), [...Array(2).fill(200), ...Array(18).fill(429)]);
        for (const r of opened) r.close();
      });
    });

    it('a stream that joins while the hub lags behind the horizon gets each event once: replayed or live, never both, none skipped', async () => {
      const e = env();
      const watched = watchOutboxReads(e.database.db);
      // Wake-ups come only when the test says so (no listener, and a poll that never comes), so the
      // hub reads the outbox only when a stream joins or the test wakes it.
      let wakeHub = () => {};
      const hub = createEventHub(watched.db, {
        heartbeatSeconds: 3600,
        retentionHours: 24,
        pollIntervalMs: 3_600_000,
        listen: async (onNotify) => {
          wakeHub = onNotify;
          return async () => {};
        },
      });
      const watcher = `usr_watcher${Date.now()}`;
      const reader = `usr_reader${Date.now()}`;
      const publish = (userId: string, n: number) =>
        e.database.db.transaction((tx) => publishEvent(tx, 'test.n', { n }, [userId]));
      try {
        const seenBefore = await publish(reader, 0);
        // Another user's stream keeps the hub's position; once its read is done and found nothing
        // waiting, the hub sits still until woken.
        await hub.open(memorySink(), { userId: watcher, keys: [watcher] });
        await waitFor('the hub to be idle', async () =>
          watched.reads.finished >= 1 && watched.reads.started === watched.reads.finished && !watched.reads.lastWaiting
            ? true
            : undefined,
        );
        const readsBefore = watched.reads.started;
        // Committed after the hub's last read: the hub is behind them when the reader joins.
        const missed = [await publish(reader, 1), await publish(reader, 2), await publish(reader, 3)];
        await settled(e.database.db, missed[2]!.id);
        assert.equal(watched.reads.started, readsBefore, 'the hub has not read them');

        const sink = memorySink();
        await hub.open(sink, { userId: reader, keys: [reader] }, seenBefore.id);
        // The hub now reads from its old position: the three events again, which this stream's
        // replay has sent already. Then one more, live.
        await waitFor('the hub to catch up', async () =>
          watched.reads.finished > readsBefore && !watched.reads.lastWaiting ? true : undefined,
        );
        const live = await publish(reader, 4);
        await settled(e.database.db, live.id);
        wakeHub();
        await waitFor('the live event', async () => (sink.text.includes(live.id) ? true : undefined));
        const frames = framesOf(sink.text);
        assert.deepEqual(frames.slice(0, 4), [...missed.map((m) => `test.n ${m.id}`), `ready ${missed[2]!.id}`]);
        assert.deepEqual(
          frames,
          [...missed.map((m) => `test.n ${m.id}`), `ready ${missed[2]!.id}`, `test.n ${live.id}`],
          'each event once, in order',
        );
      } finally {
        await hub.close();
      }
    });

    it('cleans up: no stream outlives the suite', async () => {
      for (const r of readers) r.close();
      await Promise.all(readers.map((r) => r.ended));
    });
  },
  testEnv,
  { workers: true },
);
