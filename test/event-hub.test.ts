// The event hub (platform/event-stream.ts) driven directly, with sinks in memory and wake-ups only
// when the test says: what it routes to whom, its bounds, its reads in batches, and that it gives
// back everything it held once its streams are gone. The HTTP side is in event-stream.test.ts.
import { it, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { engines, freshDatabase, type TestDatabase } from './support/database.ts';
import { waitFor } from './support/wait.ts';
import { framesOf, memorySink, presenceOf, settled, watchOutboxReads, type MemorySink } from './support/event-hub.ts';
import { publishEvent, type PublishedEvent } from '../src/platform/events.ts';
import {
  createEventHub,
  hasLiveStream,
  listenerFor,
  postgresListener,
  type EventHubOptions,
} from '../src/platform/event-stream.ts';
import type { Db } from '../src/platform/db.ts';
import type { AppError } from '../src/errors.ts';

let users = 0;
const user = (name: string) => `usr_${name}${++users}x${Date.now().toString(36)}`;

/** A hub that reads the outbox only when a stream joins or the test calls wake(), and keeps its warnings. */
function manualHub(db: Db, options: Partial<EventHubOptions> = {}) {
  const watched = watchOutboxReads(db);
  const warnings: { obj: Record<string, unknown>; msg: string }[] = [];
  let wakeHub = () => {};
  const hub = createEventHub(watched.db, {
    heartbeatSeconds: 3600,
    retentionHours: 24,
    pollIntervalMs: 3_600_000,
    listen: async (onNotify) => {
      wakeHub = onNotify;
      return async () => {};
    },
    log: {
      warn: (obj, msg) => {
        warnings.push({ obj: obj as Record<string, unknown>, msg });
      },
    },
    ...options,
  });
  /**
   * Waits until no read of the outbox is running and the last one found nothing held back. A read
   * asked for (a wake-up: open() ends with one) starts on the next turn of the event loop, after
   * which this waits.
   */
  const idle = async () => {
    await new Promise((resolve) => setImmediate(resolve));
    await waitFor(
      'the hub to be idle',
      async () => (watched.reads.started === watched.reads.finished && !watched.reads.lastWaiting ? true : undefined),
      15_000,
    );
  };
  return { hub, watched, warnings, wake: () => wakeHub(), idle };
}

/** Runs fn with a manualHub, and closes the hub after it, whatever fn did. */
async function withHub(
  db: Db,
  options: Partial<EventHubOptions>,
  fn: (h: ReturnType<typeof manualHub>) => Promise<void>,
): Promise<void> {
  const h = manualHub(db, options);
  try {
    await fn(h);
  } finally {
    await h.hub.close();
  }
}

/** The frame the hub sends for an event, as event-stream.ts writes it. */
function frameText(e: PublishedEvent): string {
  return `id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify({ id: e.id, type: e.type, createdAt: e.createdAt, data: e.data })}\n\n`;
}

/** The promise, or a failure after 15 s (a stream that never goes live must fail the test, not hang it). */
async function bounded<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 15_000);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

const received = (sink: MemorySink, e: PublishedEvent) =>
  waitFor(`${e.id} to arrive`, async () => (sink.text.includes(e.id) ? true : undefined), 15_000);

/** The query of the ready frame's id (event-stream.ts, newestUpTo). */
const newestQuery = 'ORDER BY tx DESC, id DESC LIMIT 1';
/** The query that gives a joining stream its position (event-stream.ts, horizon). */
const horizonQuery = 'SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon';

const nothingHeld = { open: 0, joined: 0, keys: 0, admitted: 0, users: 0, queries: 0, following: false };

for (const engine of engines('parity')) {
  describe(`the event hub, driven directly [${engine}]`, () => {
    let database: TestDatabase;
    before(async () => {
      database = await freshDatabase(engine, 5);
    });
    after(async () => {
      await database.drop();
    });
    const db = () => database.db;
    const publish = (audience: string[], type = 'test.n', data: object = {}) =>
      db().transaction((tx) => publishEvent(tx, type, data, audience));
    /** Several events in one transaction: they share its position in the outbox and keep their order. */
    const publishMany = (n: number, audience: string[], type = 'test.n') =>
      db().transaction(async (tx) => {
        const out: PublishedEvent[] = [];
        for (let i = 0; i < n; i++) out.push(await publishEvent(tx, type, { i }, audience));
        return out;
      });

    it('routes an event to every stream whose keys it names; one stream leaving stops none of the others; once all have left it holds nothing', async () => {
      await withHub(db(), {}, async ({ hub, watched, warnings, wake }) => {
        const [a, b, shared] = [user('a'), user('b'), `role:shared${users}`];
        const sinkA = memorySink();
        const sinkB = memorySink();
        await hub.open(sinkA, { userId: a, keys: [a, shared] });
        await hub.open(sinkB, { userId: b, keys: [b, shared] });
        assert.deepEqual(hub.stats, {
          open: 2,
          joined: 2,
          keys: 3,
          admitted: 2,
          users: 2,
          queries: 0,
          following: true,
        });
        const toBoth = await publish([shared]);
        wake();
        await received(sinkA, toBoth);
        await received(sinkB, toBoth);

        sinkA.end();
        assert.deepEqual(
          { ...hub.stats, queries: 0 },
          { open: 1, joined: 1, keys: 2, admitted: 1, users: 1, queries: 0, following: true },
        );
        const [toShared, toA] = await db().transaction(async (tx) => [
          await publishEvent(tx, 'test.n', {}, [shared]),
          await publishEvent(tx, 'test.n', {}, [a]),
        ]);
        wake();
        await received(sinkB, toShared!);
        assert.ok(
          !sinkA.text.includes(toShared!.id) && !sinkA.text.includes(toA!.id),
          'nothing goes to a stream that has left',
        );
        assert.deepEqual(framesOf(sinkB.text), ['ready', `test.n ${toBoth.id}`, `test.n ${toShared!.id}`]);

        sinkB.end();
        await waitFor('the presence rows to go', async () => (hub.stats.queries === 0 ? true : undefined), 15_000);
        assert.deepEqual(hub.stats, nothingHeld);
        assert.equal((await presenceOf(db(), a)) + (await presenceOf(db(), b)), 0);
        assert.equal(watched.count('DELETE FROM event_stream_connections WHERE id'), 2, 'one DELETE per stream');
        assert.deepEqual(warnings, []);
        assert.equal(sinkA.lateWrites + sinkB.lateWrites, 0);
      });
    });

    it('ends a stream once however many ways it ends, and close() waits for its presence row to go', async () => {
      const { hub, watched, warnings } = manualHub(db());
      const u = user('once');
      const sink = memorySink();
      await hub.open(sink, { userId: u, keys: [u] });
      sink.destroy();
      hub.endAll();
      await hub.close();
      assert.equal(await presenceOf(db(), u), 0, 'gone by the time close() answers');
      assert.equal(watched.count('DELETE FROM event_stream_connections WHERE id'), 1);
      assert.equal(sink.ended, false, 'endAll() leaves a stream that had already gone alone');
      assert.deepEqual(hub.stats, nothingHeld);
      assert.deepEqual(warnings, []);
    });

    it('drops a client whose unread bytes pass maxBufferedBytes, and not one that holds exactly that many', async () => {
      const u = user('slow');
      const ready = 'event: ready\ndata: {"resumed":false,"replayed":0}\n\n';
      const atTheBound = Buffer.byteLength('retry: 3000\n\n') + Buffer.byteLength(ready);
      await withHub(db(), { maxBufferedBytes: atTheBound }, async ({ hub, watched, warnings, wake }) => {
        const sink = memorySink({ reads: false });
        await hub.open(sink, { userId: u, keys: [u] });
        assert.equal(sink.buffered, atTheBound);
        assert.equal(sink.destroyed, false);
        assert.equal(hub.stats.open, 1);
        await publish([u]);
        wake();
        await waitFor('the slow stream to be dropped', async () => (sink.destroyed ? true : undefined), 15_000);
        assert.equal(hub.stats.open, 0);
        assert.equal(warnings.length, 1);
        assert.equal(warnings[0]!.msg, 'event stream dropped: the client reads too slowly');
        assert.equal(warnings[0]!.obj.userId, u);
        assert.equal(warnings[0]!.obj.buffered, sink.buffered);
        assert.match(String(warnings[0]!.obj.streamId), /^[0-9a-f-]{36}$/);
        assert.equal(sink.lateWrites, 0);
        // Dropping it ends it twice over (the drop, and the sink's close): its row is removed once.
        assert.equal(watched.count('DELETE FROM event_stream_connections WHERE id'), 1);
      });
    });

    it('a Last-Event-ID that is not an event id is answered resumed: false without a query', async () => {
      await withHub(db(), {}, async ({ hub, watched }) => {
        const u = user('junk');
        const real = await publish([u]);
        for (const junk of ['not-an-id', `x${real.id}`, `${real.id}x`, real.id.toUpperCase()]) {
          const sink = memorySink();
          await hub.open(sink, { userId: u, keys: [u] }, junk);
          assert.match(sink.text, /data: \{"resumed":false,"replayed":0\}/, junk);
          sink.end();
        }
        assert.equal(watched.count('SELECT tx::text AS tx FROM events WHERE id = $1'), 0);
        const sink = memorySink();
        await hub.open(sink, { userId: u, keys: [u] }, real.id);
        assert.match(sink.text, /data: \{"resumed":true,"replayed":0\}/);
        assert.equal(watched.count('SELECT tx::text AS tx FROM events WHERE id = $1'), 1);
      });
    });

    it('a replay whose client goes away stops writing and ends', async () => {
      const u = user('leaves');
      const from = await publish([u]);
      const missed = await publishMany(3, [u]);
      await settled(db(), missed[2]!.id);
      await withHub(db(), {}, async ({ hub, watched, warnings }) => {
        const sink = memorySink({ reads: false });
        const opening = hub.open(sink, { userId: u, keys: [u] }, from.id);
        await waitFor(
          'the replay to wait for the reader',
          async () => (sink.text.includes(missed[0]!.id) ? true : undefined),
          15_000,
        );
        sink.destroy();
        await bounded(opening, 'the replay to end');
        assert.equal(sink.listenerCount('drain'), 0, 'the replay leaves no listener behind');
        assert.equal(sink.lateWrites, 0);
        assert.ok(!sink.text.includes(missed[1]!.id));
        assert.equal(watched.count(newestQuery), 0, 'no ready frame is prepared for a stream that has gone');
        assert.deepEqual({ ...hub.stats, queries: 0 }, { ...nothingHeld, queries: 0 });
        assert.deepEqual(warnings, []);
      });
    });

    it('wake-ups that come together make one read', async () => {
      await withHub(db(), {}, async ({ hub, watched, wake, idle }) => {
        const u = user('wakes');
        const sink = memorySink();
        await hub.open(sink, { userId: u, keys: [u] });
        await idle();
        const event = await publish([u]);
        await settled(db(), event.id);
        const before = watched.reads.started;
        wake();
        wake();
        wake();
        await received(sink, event);
        await idle();
        assert.equal(watched.reads.started - before, 1);
      });
    });

    it('after a failed read it tries again by itself, and delivers once the database answers', async () => {
      await withHub(db(), {}, async ({ hub, watched, warnings, wake, idle }) => {
        const u = user('retry');
        const sink = memorySink();
        await hub.open(sink, { userId: u, keys: [u] });
        await idle();
        watched.fail('AS waiting');
        const event = await publish([u]);
        await settled(db(), event.id);
        wake();
        await waitFor('the failed read', async () => (warnings.length > 0 ? true : undefined), 15_000);
        watched.heal();
        await received(sink, event); // no wake-up from the test: the hub's retry reads it
        assert.deepEqual(framesOf(sink.text), ['ready', `test.n ${event.id}`]);
      });
    });

    it('a read that fails because the hub is closing is not reported', async () => {
      const { hub, watched, warnings, wake, idle } = manualHub(db());
      const u = user('closing');
      let release = () => {};
      try {
        await hub.open(memorySink(), { userId: u, keys: [u] });
        await idle();
        release = watched.hold();
        watched.fail('AS waiting');
        const before = watched.reads.started;
        wake();
        await waitFor('the read to start', async () => (watched.reads.started > before ? true : undefined), 15_000);
        const closing = hub.close();
        release(); // the read fails now, after close() began
        await closing;
        assert.equal(watched.reads.finished, watched.reads.started);
        assert.deepEqual(warnings, []);
      } finally {
        release();
        await hub.close();
      }
    });

    it('on PostgreSQL, an event held back by an older transaction is read again by itself once that one ends', async (t) => {
      if (engine !== 'postgres') return t.skip('concurrent transactions need PostgreSQL');
      const { hub, watched, wake, idle } = manualHub(db());
      const u = user('held');
      const sink = memorySink();
      let release = () => {};
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      let started!: (e: PublishedEvent) => void;
      const olderEvent = new Promise<PublishedEvent>((resolve) => {
        started = resolve;
      });
      try {
        await hub.open(sink, { userId: u, keys: [u] });
        await idle();
        const older = db().transaction(async (tx) => {
          started(await publishEvent(tx, 'test.older', {}, [u]));
          await gate;
        });
        const first = await olderEvent;
        const newer = await publish([u], 'test.newer');
        const before = watched.reads.finished;
        wake();
        await waitFor(
          'a read that finds the newer event held back',
          async () => (watched.reads.finished > before && watched.reads.lastWaiting ? true : undefined),
          15_000,
        );
        release();
        await older;
        await received(sink, newer); // no wake-up from the test: the hub's retry reads them
        assert.deepEqual(framesOf(sink.text), ['ready', `test.older ${first.id}`, `test.newer ${newer.id}`]);
      } finally {
        release();
        await hub.close();
      }
    });

    it('says when it cannot listen, and the poll carries the events instead; a listener that fails later is reported too', async () => {
      const u = user('nolisten');
      const warnings: { obj: Record<string, unknown>; msg: string }[] = [];
      const log = {
        warn: (obj: object, msg: string) => {
          warnings.push({ obj: obj as Record<string, unknown>, msg });
        },
      };
      const broken = createEventHub(db(), {
        heartbeatSeconds: 3600,
        retentionHours: 24,
        pollIntervalMs: 50,
        log,
        listen: async () => {
          throw new Error('no listening today');
        },
      });
      const sink = memorySink();
      try {
        await broken.open(sink, { userId: u, keys: [u] });
        const event = await publish([u]);
        await received(sink, event);
        const w = warnings.find((x) => x.msg === 'could not listen for events; streams fall back to polling');
        assert.equal((w?.obj.err as Error | undefined)?.message, 'no listening today');
      } finally {
        await broken.close();
      }
      let fail: (err: Error) => void = () => {};
      const flaky = createEventHub(db(), {
        heartbeatSeconds: 3600,
        retentionHours: 24,
        pollIntervalMs: 3_600_000,
        log,
        listen: async (_onNotify, onError) => {
          fail = onError;
          return async () => {};
        },
      });
      try {
        await flaky.open(memorySink(), { userId: u, keys: [u] });
        fail(new Error('connection lost'));
        const w = warnings.find((x) => x.msg === 'event stream listener connection failed; reconnecting');
        assert.equal((w?.obj.err as Error | undefined)?.message, 'connection lost');
      } finally {
        await flaky.close();
      }
    });

    it('heartbeats: a ping every heartbeatSeconds, presence refreshed, rows of streams gone elsewhere for ten minutes removed', async () => {
      const { hub, watched, warnings } = manualHub(db(), { heartbeatSeconds: 1 });
      const u = user('beat');
      const [recent, stale] = [user('recent'), user('stale')];
      const sink = memorySink();
      try {
        // Rows another process left: one seen 5 minutes ago (it may still be alive), one 11 minutes ago.
        await db().query(
          "INSERT INTO event_stream_connections (id, user_id, seen_at) VALUES (gen_random_uuid()::text, $1, now() - interval '5 minutes'), (gen_random_uuid()::text, $2, now() - interval '11 minutes')",
          [recent, stale],
        );
        await hub.open(sink, { userId: u, keys: [u] });
        await db().query("UPDATE event_stream_connections SET seen_at = now() - interval '1 hour' WHERE user_id = $1", [
          u,
        ]);
        const pings = () => sink.text.split(': ping\n\n').length - 1;
        await waitFor('a heartbeat', async () => (pings() > 0 ? true : undefined), 15_000);
        assert.ok(pings() <= 3, `one ping a second, not ${pings()} already`);
        await waitFor(
          'the presence row to be refreshed',
          async () => {
            const [row] = await db().query<{ fresh: boolean }>(
              "SELECT seen_at > now() - interval '1 minute' AS fresh FROM event_stream_connections WHERE user_id = $1",
              [u],
            );
            return row?.fresh ? true : undefined;
          },
          15_000,
        );
        await waitFor(
          'the stale row to go',
          async () => ((await presenceOf(db(), stale)) === 0 ? true : undefined),
          15_000,
        );
        assert.equal(await presenceOf(db(), recent), 1, 'a row seen 5 minutes ago stays');
        assert.equal(warnings.length, 0);
        watched.fail('UPDATE event_stream_connections');
        const w = await waitFor(
          'the warning',
          async () => warnings.find((x) => x.msg === 'could not refresh event stream presence'),
          15_000,
        );
        assert.match(String((w.obj.err as Error).message), /failed on purpose/);
      } finally {
        await hub.close();
        await db().query('DELETE FROM event_stream_connections WHERE user_id = ANY($1)', [[recent, stale]]);
      }
    });

    it('on PostgreSQL, the listening connection comes back after it is cut, and what was committed meanwhile is read at once', async (t) => {
      if (engine !== 'postgres') return t.skip('PGlite listens in-process');
      const warnings: { obj: Record<string, unknown>; msg: string }[] = [];
      const hub = createEventHub(db(), {
        heartbeatSeconds: 3600,
        retentionHours: 24,
        pollIntervalMs: 3_600_000,
        listen: postgresListener(database.url!),
        log: {
          warn: (obj, msg) => {
            warnings.push({ obj: obj as Record<string, unknown>, msg });
          },
        },
      });
      const listeners = async () =>
        (
          await db().query<{ pid: number }>(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN engine_room_events'",
          )
        ).map((r) => r.pid);
      const u = user('listen');
      const sink = memorySink();
      try {
        await hub.open(sink, { userId: u, keys: [u] });
        const [first] = await waitFor(
          'the hub to listen',
          async () => ((await listeners()).length === 1 ? listeners() : undefined),
          15_000,
        );
        const live = await publish([u]);
        await received(sink, live); // woken by its NOTIFY
        // Cut the connection (waiting until its backend is gone), then commit while nobody listens.
        await db().query('SELECT pg_terminate_backend($1, 5000)', [first]);
        const missed = await publish([u]);
        await waitFor(
          'the hub to listen again',
          async () => ((await listeners()).some((pid) => pid !== first) ? true : undefined),
          15_000,
        );
        await received(sink, missed); // its NOTIFY went nowhere: the reconnection's own wake-up reads it
        assert.ok(warnings.some((w) => w.msg === 'event stream listener connection failed; reconnecting'));
      } finally {
        await hub.close();
      }
      assert.deepEqual(await listeners(), [], 'close() ends the listening connection');
    });

    it('a client gone before its presence row is written leaves no row, and no warning when that write fails', async () => {
      const { hub, watched, warnings } = manualHub(db());
      const u = user('early');
      /** A client that goes away as soon as the stream starts writing to it. */
      const leavesAtOnce = () => {
        const sink = memorySink();
        const write = sink.write;
        sink.write = (chunk: string) => {
          const ok = write(chunk);
          sink.destroy();
          return ok;
        };
        return sink;
      };
      try {
        await hub.open(leavesAtOnce(), { userId: u, keys: [u] });
        assert.equal(await presenceOf(db(), u), 0);
        watched.fail('INSERT INTO event_stream_connections');
        await hub.open(leavesAtOnce(), { userId: u, keys: [u] });
        assert.deepEqual(warnings, []);
        assert.deepEqual({ ...hub.stats, queries: 0 }, { ...nothingHeld, queries: 0 });
      } finally {
        await hub.close();
      }
    });

    it('a client gone while its stream waits to join is never joined; the streams already there go on', async () => {
      const { hub, watched, warnings, wake, idle } = manualHub(db());
      const [u, other] = [user('joining'), user('staying')];
      let release = () => {};
      /** Opens a stream whose client goes away while it waits for its position. */
      const goneWhileJoining = async () => {
        release = watched.hold(horizonQuery);
        const before = watched.count(horizonQuery);
        const sink = memorySink();
        const opening = hub.open(sink, { userId: u, keys: [u] });
        await waitFor(
          'the stream to ask for its position',
          async () => (watched.count(horizonQuery) > before ? true : undefined),
          15_000,
        );
        sink.end();
        release();
        await bounded(opening, 'open() to answer');
      };
      try {
        // Alone: the hub keeps no position for nobody.
        await goneWhileJoining();
        assert.deepEqual({ ...hub.stats, queries: 0 }, { ...nothingHeld, queries: 0 });
        assert.equal(watched.count(newestQuery), 0, 'no ready frame is prepared for a stream that has gone');
        // Beside another stream: that one keeps the hub's position, and its events.
        const staying = memorySink();
        await hub.open(staying, { userId: other, keys: [other] });
        await idle();
        await goneWhileJoining();
        assert.deepEqual([hub.stats.open, hub.stats.joined, hub.stats.following], [1, 1, true]);
        const event = await publish([other]);
        wake();
        await received(staying, event);
        assert.deepEqual(warnings, []);
      } finally {
        release();
        await hub.close();
      }
    });

    it('a stream that joins while the hub lags behind leaves the position of the others where it was', async () => {
      await withHub(db(), {}, async ({ hub, watched, wake, idle }) => {
        const [a, b] = [user('lag-a'), user('lag-b')];
        const sinkA = memorySink();
        await hub.open(sinkA, { userId: a, keys: [a] });
        await idle();
        const readsBefore = watched.reads.started;
        // Committed with no wake-up: the hub has not read it when b joins.
        const forA = await publish([a]);
        await settled(db(), forA.id);
        assert.equal(watched.reads.started, readsBefore);
        await hub.open(memorySink(), { userId: b, keys: [b] });
        wake();
        await received(sinkA, forA);
      });
    });

    it('close() ends the streams still open, and the hub holds nothing after it', async () => {
      const { hub } = manualHub(db());
      const u = user('open-at-close');
      const sinks = [memorySink(), memorySink()];
      for (const sink of sinks) await hub.open(sink, { userId: u, keys: [u] });
      await hub.close();
      assert.deepEqual(
        sinks.map((x) => x.ended),
        [true, true],
      );
      assert.deepEqual(hub.stats, nothingHeld);
      assert.equal(await presenceOf(db(), u), 0);
    });

    it('on PostgreSQL, a listener that cannot connect says why and keeps trying, while the poll carries the events', async (t) => {
      if (engine !== 'postgres') return t.skip('PGlite listens in-process');
      const warnings: { obj: Record<string, unknown>; msg: string }[] = [];
      const nowhere = new URL(database.url!);
      nowhere.pathname = '/er_no_such_database';
      const hub = createEventHub(db(), {
        heartbeatSeconds: 3600,
        retentionHours: 24,
        pollIntervalMs: 50,
        listen: postgresListener(nowhere.toString()),
        log: {
          warn: (obj, msg) => {
            warnings.push({ obj: obj as Record<string, unknown>, msg });
          },
        },
      });
      const u = user('unreachable');
      const sink = memorySink();
      try {
        await hub.open(sink, { userId: u, keys: [u] });
        const failures = () =>
          warnings.filter((w) => w.msg === 'event stream listener connection failed; reconnecting');
        await waitFor('a second attempt to fail', async () => (failures().length >= 2 ? true : undefined), 15_000);
        assert.match(String((failures()[0]!.obj.err as Error).message), /er_no_such_database/);
        const event = await publish([u]);
        await received(sink, event);
      } finally {
        await hub.close();
      }
    });

    it("the engine's own listener wakes the hub on a commit, with no poll to fall back on", async () => {
      await withHub(db(), { listen: listenerFor(db(), database.url) }, async ({ hub, idle }) => {
        const u = user('woken');
        const sink = memorySink();
        await hub.open(sink, { userId: u, keys: [u] });
        await idle(); // the read that open() asks for is over: only the listener can wake the hub now
        // On PostgreSQL the listening connection is made in the background: wait for it.
        if (database.url) {
          await waitFor(
            'the hub to listen',
            async () => {
              const [row] = await db().query<{ n: number }>(
                "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN engine_room_events'",
              );
              return row!.n > 0 ? true : undefined;
            },
            15_000,
          );
        }
        await received(sink, await publish([u]));
      });
    });

    it('hasLiveStream: a user is watching while a presence row was seen within two heartbeats and 5 s', async () => {
      const [fresh, late, stale] = [user('live'), user('late'), user('gone')];
      const seen = (userId: string, secondsAgo: number) =>
        db().query(
          'INSERT INTO event_stream_connections (id, user_id, seen_at) VALUES (gen_random_uuid()::text, $1, now() - make_interval(secs => $2))',
          [userId, secondsAgo],
        );
      try {
        // heartbeatSeconds 10: seen within the last 25 s.
        await seen(fresh, 0);
        await seen(late, 20);
        await seen(stale, 30);
        assert.equal(await hasLiveStream(db(), fresh, 10), true);
        assert.equal(await hasLiveStream(db(), late, 10), true);
        assert.equal(await hasLiveStream(db(), stale, 10), false);
        assert.equal(await hasLiveStream(db(), user('never'), 10), false);
      } finally {
        await db().query('DELETE FROM event_stream_connections WHERE user_id = ANY($1)', [[fresh, late, stale]]);
      }
    });

    it('admits maxStreamsPerUser streams of a user and maxStreams in all; a place is given back once, however often released', async () => {
      await withHub(db(), { maxStreamsPerUser: 2, maxStreams: 3 }, async ({ hub }) => {
        const [a, b] = [user('lim-a'), user('lim-b')];
        const owner = (userId: string) => ({ userId, keys: [userId] });
        const a1 = memorySink();
        await hub.open(a1, owner(a));
        const a2 = hub.admit(owner(a));
        assert.throws(
          () => hub.admit(owner(a)),
          (err: AppError) => {
            assert.equal(err.code, 'rate_limited');
            assert.match(err.message, /You have 2 live event streams open/);
            // Retry-After, and the refused connection is not kept alive either (its descriptor is the resource).
            assert.deepEqual(err.extra, { retryAfterSeconds: 10, headers: { connection: 'close' } });
            return true;
          },
        );
        a1.end();
        assert.deepEqual([hub.stats.admitted, hub.stats.users], [1, 1]);
        const a3 = hub.admit(owner(a)); // the place a1 gave back
        assert.throws(() => hub.admit(owner(a)), /You have 2 live event streams open/);
        const b1 = hub.admit(owner(b));
        assert.throws(() => hub.admit(owner(b)), /This server holds as many live event streams as it may/);
        a2.release();
        a2.release();
        assert.deepEqual([hub.stats.admitted, hub.stats.users], [2, 2], 'released twice, given back once');
        a3.release();
        b1.release();
        assert.deepEqual({ ...hub.stats, queries: 0 }, { ...nothingHeld, queries: 0 });
      });
    });

    it('a stream opened on a closed hub is ended at once and holds nothing', async () => {
      const { hub } = manualHub(db());
      const u = user('late');
      const admission = hub.admit({ userId: u, keys: [u] });
      await hub.close();
      const sink = memorySink();
      await admission.open(sink);
      assert.equal(sink.ended, true);
      assert.equal(sink.text, '');
      assert.deepEqual(hub.stats, nothingHeld);
    });

    describe('events that arrive while a stream replays', () => {
      /**
       * A stream resuming after `from`, on a sink that reads nothing until drained: the replay's
       * first frame fills it, so the replay waits, joined to the hub but not yet live.
       */
      async function stalledReplay(maxBufferedBytes?: number) {
        const u = user('replay');
        const from = await publish([u]);
        const missed = await publishMany(2, [u]);
        await settled(db(), missed[1]!.id);
        const h = manualHub(db(), maxBufferedBytes === undefined ? {} : { maxBufferedBytes });
        const sink = memorySink({ reads: false });
        const opening = h.hub.open(sink, { userId: u, keys: [u] }, from.id);
        await waitFor(
          'the replay to wait for the reader',
          async () => (sink.text.includes(missed[0]!.id) && h.hub.stats.joined === 1 ? true : undefined),
          15_000,
        );
        await h.idle();
        /** Publishes to the stream and waits until the hub has read it. */
        const arrive = async (n = 1) => {
          const live = await publishMany(n, [u], 'test.live');
          await settled(db(), live[n - 1]!.id);
          const started = h.watched.reads.started;
          h.wake();
          await waitFor(
            'the hub to read them',
            async () => (h.watched.reads.finished > started ? true : undefined),
            15_000,
          );
          return live;
        };
        return { ...h, u, sink, opening, missed, arrive };
      }

      it('wait for the replay and follow its ready frame, in order, each once', async () => {
        const { hub, sink, opening, missed, arrive, warnings } = await stalledReplay();
        try {
          const live = await arrive(2);
          assert.ok(!sink.text.includes(live[0]!.id), 'held back while the replay runs');
          sink.drain();
          await bounded(opening, 'the stream to go live');
          assert.equal(sink.listenerCount('drain'), 0, 'the replay leaves no listener behind');
          assert.equal(sink.listenerCount('close'), 1, "the stream's own");
          assert.deepEqual(framesOf(sink.text), [
            ...missed.map((m) => `test.n ${m.id}`),
            `ready ${missed[1]!.id}`,
            ...live.map((l) => `test.live ${l.id}`),
          ]);
          assert.match(sink.text, /data: \{"resumed":true,"replayed":2\}/);
          assert.deepEqual(warnings, []);
        } finally {
          await hub.close();
        }
      });

      it('are not sent to a stream dropped as it goes live', async () => {
        const { hub, sink, missed, arrive } = await stalledReplay();
        try {
          await arrive(2);
          // The client reads the rest of the replay, then stops: its ready frame is one too many.
          const write = sink.write;
          sink.write = (chunk: string) => {
            const ok = write(chunk);
            if (chunk.includes('event: ready')) sink.buffered = 2 * 1024 * 1024;
            return ok;
          };
          sink.drain();
          await waitFor('the stream to be dropped', async () => (sink.destroyed ? true : undefined), 15_000);
          assert.deepEqual(framesOf(sink.text), [...missed.map((m) => `test.n ${m.id}`), `ready ${missed[1]!.id}`]);
          assert.equal(sink.lateWrites, 0);
        } finally {
          await hub.close();
        }
      });

      it('are held up to maxBufferedBytes; past it the stream is dropped', async () => {
        // The bound is exactly two live frames: two are held, the third drops the stream.
        const probe = await publishMany(1, [user('probe')], 'test.live');
        const { hub, sink, arrive, warnings } = await stalledReplay(2 * Buffer.byteLength(frameText(probe[0]!)));
        try {
          await arrive(1);
          await arrive(1);
          assert.equal(sink.destroyed, false, 'exactly at the bound is not past it');
          await arrive(1);
          await waitFor('the stream to be dropped', async () => (sink.destroyed ? true : undefined), 15_000);
          assert.deepEqual(
            warnings.map((w) => w.msg),
            ['event stream dropped: too many events arrived during the replay'],
          );
          assert.equal(hub.stats.open, 0);
          assert.equal(sink.lateWrites, 0);
        } finally {
          await hub.close();
        }
      });
    });

    it('reads the outbox batchSize events at a time, live and in a replay, and sends each once in order', async () => {
      const u = user('batch');
      await withHub(db(), { batchSize: 2 }, async ({ hub, watched, warnings, wake, idle }) => {
        const sink = memorySink();
        await hub.open(sink, { userId: u, keys: [u] });
        await idle();
        const events = await publishMany(5, [u]);
        await settled(db(), events[4]!.id);
        const before = watched.reads.started;
        wake();
        await received(sink, events[4]!);
        await idle();
        assert.equal(watched.reads.started - before, 3, 'two full batches, then the rest');
        assert.deepEqual(framesOf(sink.text), ['ready', ...events.map((e) => `test.n ${e.id}`)]);
        sink.end();

        const replayQuery = 'AND (tx, id) <= ($4::xid8, $5::text)';
        const queriesBefore = watched.count(replayQuery);
        const again = memorySink();
        await hub.open(again, { userId: u, keys: [u] }, events[1]!.id);
        assert.equal(
          watched.count(replayQuery) - queriesBefore,
          2,
          'three events to replay: a full batch, then the rest',
        );
        assert.deepEqual(framesOf(again.text), [
          ...events.slice(2).map((e) => `test.n ${e.id}`),
          `ready ${events[4]!.id}`,
        ]);
        assert.match(again.text, /data: \{"resumed":true,"replayed":3\}/);
        assert.deepEqual(warnings, []);
      });
    });

    it('a wake-up that finds every stream gone reads nothing and leaves nothing behind', async () => {
      await withHub(db(), {}, async ({ hub, watched, warnings, wake, idle }) => {
        const u = user('gone');
        const sink = memorySink();
        await hub.open(sink, { userId: u, keys: [u] });
        await idle();
        const before = watched.reads.started;
        wake(); // the read is scheduled for the next turn of the event loop...
        sink.end(); // ...and the stream leaves first
        await new Promise((resolve) => setImmediate(resolve));
        await new Promise((resolve) => setImmediate(resolve));
        assert.equal(watched.reads.started, before);
        assert.deepEqual(warnings, []);
        assert.equal(hub.stats.following, false);
      });
    });

    it('the last stream leaving while a read is in flight leaves the hub without a position', async () => {
      const { hub, watched, warnings, wake, idle } = manualHub(db());
      const u = user('inflight');
      const sink = memorySink();
      let release = () => {};
      try {
        await hub.open(sink, { userId: u, keys: [u] });
        await idle();
        release = watched.hold();
        const event = await publish([u]);
        await settled(db(), event.id);
        const before = watched.reads.started;
        wake();
        await waitFor('the read to start', async () => (watched.reads.started > before ? true : undefined), 15_000);
        sink.end();
        release();
        await idle();
        assert.equal(hub.stats.following, false);
        assert.ok(!sink.text.includes(event.id));
        assert.deepEqual(warnings, []);
      } finally {
        release(); // a read held would hold close() up
        await hub.close();
      }
    });

    it('says what failed when the database does: an outbox it cannot read, a presence row it cannot remove or add', async () => {
      await withHub(db(), {}, async ({ hub, watched, warnings, wake, idle }) => {
        const u = user('fail');
        const warned = (msg: string) =>
          waitFor(`the warning "${msg}"`, async () => warnings.find((w) => w.msg === msg), 15_000);
        const sink = memorySink();
        await hub.open(sink, { userId: u, keys: [u] });
        await idle();
        watched.fail('AS waiting');
        wake();
        const unread = await warned('reading the event outbox failed; retrying');
        assert.match(String((unread.obj.err as Error).message), /failed on purpose/);

        watched.fail('DELETE FROM event_stream_connections');
        sink.end();
        const kept = await warned('could not remove an event stream presence row');
        assert.match(String((kept.obj.err as Error).message), /failed on purpose/);

        watched.fail('INSERT INTO event_stream_connections');
        const refused = memorySink();
        await hub.open(refused, { userId: u, keys: [u] });
        assert.equal(refused.destroyed, true);
        assert.match(
          String(((await warned('could not start an event stream')).obj.err as Error).message),
          /failed on purpose/,
        );
        assert.deepEqual({ ...hub.stats, queries: 0 }, { ...nothingHeld, queries: 0 });
      });
    });
  });
}
