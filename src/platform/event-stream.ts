// The live event stream behind GET /v1/events: Server-Sent Events made from the events outbox
// (platform/events.ts). It knows no event types: a stream receives the events whose `audience`
// shares a key with the stream's keys (the user's id, and `role:<role>` groups).
//
// How an event reaches a browser:
// 1. publishEvent inserts the row in the business transaction; after the commit, the process sends
//    NOTIFY engine_room_events (coalesced: one in flight per process, see platform/events.ts), which
//    PostgreSQL delivers to every listening process. Each process listens on one dedicated
//    connection (not from the pool); on PGlite, through its own listen API.
// 2. A notification only wakes the process's hub. The hub then reads the outbox in (tx, id) order
//    up to the horizon (platform/outbox.ts: every event below it is committed for good, so nothing
//    can later appear behind the hub's position), and hands each event to the
//    streams whose keys match. One query per wake-up per process, however many streams are open.
//    Committed events still above the horizon (an older transaction is running) are fetched again
//    after a short back-off; a slow safety poll covers notifications lost while reconnecting.
// 3. Each frame carries `id: <event id>`. A client that reconnects with Last-Event-ID (EventSource
//    does it by itself) is replayed, from the table, every event of its audience after that
//    event's position, as long as that event is within the retention window; the replay goes up
//    to the horizon at the moment the stream joins the hub, and live delivery sends only what lies
//    beyond it, so there is neither a gap nor a duplicate between the two. Then comes
//    `event: ready` (its id: the newest of the stream's own events up to there, if any), with `resumed` false when a
//    Last-Event-ID could not be honoured (unknown, or older than the window): the client should
//    refetch its state through the API.
// 4. Heartbeats: a `: ping` comment every heartbeatSeconds. A slow reader cannot make the server
//    buffer without bound: live frames beyond maxBufferedBytes waiting in the socket's buffer drop
//    the connection (the client comes back with Last-Event-ID), and a replay waits for 'drain'.
// 5. Presence: each open stream has a row in event_stream_connections, refreshed at every
//    heartbeat, so other processes (the email jobs) can tell whether a user is watching.
// 6. Limits: a process admits at most maxStreams streams, and at most maxStreamsPerUser for one
//    user; past either, admit() throws rate_limited before anything is written.
//
// This file is the hub's surface and its streams' lives (open, deliver, heartbeat, end); each
// part it composes is a file of event-stream/ with explicit inputs: admission.ts (places, 6),
// audience.ts (routing by audience key), follow.ts (reading the outbox live, 2), replay.ts (3),
// presence.ts (5), listen.ts (where wake-ups come from, 1), stream.ts (what they share).
import { randomUUID } from 'node:crypto';
import type { Db } from './db.ts';
import { createPlaces } from './event-stream/admission.ts';
import { createAudienceRoutes } from './event-stream/audience.ts';
import { followOutbox } from './event-stream/follow.ts';
import type { Listen } from './event-stream/listen.ts';
import { enterPresence, leavePresence, refreshPresence } from './event-stream/presence.ts';
import { newestUpTo, replay, resumePoint } from './event-stream/replay.ts';
import {
  frameOf,
  isAfter,
  type Position,
  type Stream,
  type StreamOwner,
  type StreamSink,
} from './event-stream/stream.ts';

export { audienceKeysOf, staffAudience } from './event-stream/audience.ts';
export { hasLiveStream } from './event-stream/presence.ts';
export { listenerFor, postgresListener } from './event-stream/listen.ts';
export type { StreamSink } from './event-stream/stream.ts';

export interface EventHubOptions {
  heartbeatSeconds: number;
  retentionHours: number;
  /** Where wake-ups come from; null: the poll alone. */
  listen: Listen | null;
  /** The safety poll (default 5 s; 250 ms when there is nothing to listen to). */
  pollIntervalMs?: number;
  /** Bytes a stream may have waiting in its socket buffer before it is dropped (default 1 MiB). */
  maxBufferedBytes?: number;
  /** Events read per query (default 500). */
  batchSize?: number;
  /** Streams this process holds open at most (default: no limit). */
  maxStreams?: number;
  /** Streams one user may hold open in this process at most (default: no limit). */
  maxStreamsPerUser?: number;
  log?: { warn(obj: object, msg: string): void };
}

/** A place for one stream, taken by admit(): open the stream on it, or give it back. */
export interface Admission {
  /** Runs the stream on the sink until it closes (which gives the place back); answers once it is live. */
  open(sink: StreamSink, lastEventId?: string): Promise<void>;
  /** Gives the place back without opening a stream. */
  release(): void;
}

export interface EventHub {
  /**
   * Takes a place for one more stream of the owner, or throws AppError rate_limited when the user
   * or the process has none left. Synchronous, so that the check and the taking are one step:
   * parallel requests cannot all see the same free place.
   */
  admit(owner: StreamOwner): Admission;
  /** admit(owner).open(sink, lastEventId). */
  open(sink: StreamSink, owner: StreamOwner, lastEventId?: string): Promise<void>;
  /** Ends every open stream (their clients reconnect, elsewhere if need be, with Last-Event-ID). */
  endAll(): void;
  /** Ends every stream, stops listening and waits for the hub's queries to finish. */
  close(): Promise<void>;
  /** What the hub holds at this moment: once every stream has gone, all of it is back to nothing. */
  readonly stats: HubStats;
}

export interface HubStats {
  /** Streams open, joined or still replaying. */
  open: number;
  /** Streams the hub routes live events to. */
  joined: number;
  /** Audience keys the hub routes by. */
  keys: number;
  /** Places taken (admitted, not yet given back), and the users holding them. */
  admitted: number;
  users: number;
  /** The hub's queries not yet finished. */
  queries: number;
  /** Whether the hub has a position in the outbox (it has one only while a stream is joined). */
  following: boolean;
}

export function createEventHub(db: Db, options: EventHubOptions): EventHub {
  const maxBuffered = options.maxBufferedBytes ?? 1024 * 1024;
  const batchSize = options.batchSize ?? 500;
  const log = options.log ?? { warn: () => {} };
  const places = createPlaces({
    maxStreams: options.maxStreams ?? Infinity,
    maxStreamsPerUser: options.maxStreamsPerUser ?? Infinity,
  });
  const routes = createAudienceRoutes();
  const opened = new Set<Stream>(); // every open one, joined or not yet
  const inflight = new Set<Promise<unknown>>();
  let closed = false;

  function track<T>(p: Promise<T>): Promise<T> {
    inflight.add(p);
    // Bookkeeping only: the caller awaits p and handles its failure.
    void p.finally(() => inflight.delete(p)).catch(() => {});
    return p;
  }

  const outbox = followOutbox(db, {
    batchSize,
    log,
    track,
    pollMs: options.pollIntervalMs ?? (options.listen ? 5000 : 250),
    listen: options.listen,
    hasReaders: () => routes.joined > 0,
    onEvent: (row, position) => {
      const targets = routes.targetsOf(row.audience);
      if (targets.size === 0) return;
      const frame = frameOf(row);
      for (const s of targets) deliver(s, frame, position);
    },
  });

  function drop(s: Stream, reason: string): void {
    if (s.closed) return;
    log.warn(
      { streamId: s.id, userId: s.owner.userId, buffered: s.sink.writableLength },
      `event stream dropped: ${reason}`,
    );
    s.sink.destroy();
    release(s);
  }

  function send(s: Stream, frame: string): void {
    if (s.closed) return;
    s.sink.write(frame);
    if (s.sink.writableLength > maxBuffered) drop(s, 'the client reads too slowly');
  }

  function deliver(s: Stream, frame: string, position: Position): void {
    if (s.closed || (s.upTo && !isAfter(position, s.upTo))) return;
    if (s.live) return send(s, frame);
    s.pending.push(frame);
    s.pendingBytes += frame.length;
    if (s.pendingBytes > maxBuffered) drop(s, 'too many events arrived during the replay');
  }

  function release(s: Stream): void {
    if (s.closed) return;
    s.closed = true;
    s.leave();
    opened.delete(s);
    routes.leave(s);
    if (routes.joined === 0) outbox.forget();
    void forget(s); // logs its own failure; a stream's close does not wait for the row
  }

  function forget(s: Stream): Promise<unknown> {
    return track(leavePresence(db, s.id)).catch((err: Error) =>
      log.warn({ err }, 'could not remove an event stream presence row'),
    );
  }

  const heartbeat = setInterval(() => {
    if (opened.size === 0) return;
    for (const s of opened) send(s, ': ping\n\n');
    // Logs its own failure; the next beat tries again.
    void track(
      refreshPresence(
        db,
        [...opened].map((s) => s.id),
        options.heartbeatSeconds,
      ),
    ).catch((err: Error) => log.warn({ err }, 'could not refresh event stream presence'));
  }, options.heartbeatSeconds * 1000);
  heartbeat.unref();

  function admit(owner: StreamOwner): Admission {
    const release = places.take(owner);
    return { open: (sink, lastEventId) => open(sink, owner, lastEventId, release), release };
  }

  async function open(
    sink: StreamSink,
    owner: StreamOwner,
    lastEventId: string | undefined,
    leave: () => void,
  ): Promise<void> {
    if (closed) {
      leave();
      sink.end();
      return;
    }
    const s: Stream = {
      id: randomUUID(),
      owner,
      keys: new Set(owner.keys),
      sink,
      live: false,
      upTo: null,
      pending: [],
      pendingBytes: 0,
      closed: false,
      leave,
    };
    opened.add(s);
    sink.once('close', () => release(s));
    // Reconnect after 3 s when the connection drops; the first bytes also flush the headers.
    sink.write('retry: 3000\n\n');
    try {
      outbox.listen();
      await track(enterPresence(db, s.id, owner.userId));
      // Closed while inserting: its DELETE may have run first, on another connection.
      if (s.closed) return void (await forget(s));
      const from = lastEventId ? await resumePoint(db, lastEventId, options.retentionHours) : null;
      if (s.closed) return;
      const upTo = await outbox.join((end) => {
        if (s.closed) return false;
        routes.join(s);
        s.upTo = end;
        return true;
      });
      if (s.closed || upTo === null) return;
      const replayed = from
        ? await replay(db, s, from, upTo, { retentionHours: options.retentionHours, batchSize, track })
        : 0;
      if (s.closed) return;
      const readyId = await newestUpTo(db, s.keys, upTo, options.retentionHours);
      const ready = { resumed: from !== null, replayed };
      send(s, `${readyId ? `id: ${readyId}\n` : ''}event: ready\ndata: ${JSON.stringify(ready)}\n\n`);
      s.live = true;
      const pending = s.pending;
      s.pending = [];
      s.pendingBytes = 0;
      for (const frame of pending) send(s, frame);
      // Anything committed while this stream was joining.
      outbox.wake();
    } catch (err) {
      if (!s.closed) {
        log.warn({ err }, 'could not start an event stream');
        s.sink.destroy();
        release(s);
      }
    }
  }

  return {
    admit,
    open: (sink, owner, lastEventId) => admit(owner).open(sink, lastEventId),
    endAll() {
      for (const s of [...opened]) {
        s.sink.end();
        release(s);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      this.endAll();
      clearInterval(heartbeat);
      await outbox.close();
      await Promise.allSettled([...inflight]);
    },
    get stats() {
      return {
        open: opened.size,
        joined: routes.joined,
        keys: routes.keys,
        admitted: places.admitted,
        users: places.users,
        queries: inflight.size,
        following: outbox.following,
      };
    },
  };
}
