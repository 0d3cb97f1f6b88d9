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
// 6. Limits: every stream holds a socket (a file descriptor) for as long as it lasts, so a process
//    admits at most maxStreams of them, and at most maxStreamsPerUser for one user; past either,
//    admit() throws rate_limited before anything is written. A process that ran out of file
//    descriptors broke its embedded database for good (3,000 streams of one customer did it). The
//    counts are this process's own: the resource they protect is too.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { PGlite } from '@electric-sql/pglite';
import type { Db, Queryable } from './db.ts';
import { pgliteOf } from './db.ts';
import { eventChannel } from './events.ts';
import { eventsAfterSql, horizonSql, readHorizon } from './outbox.ts';
import { AppError } from '../errors.ts';


/** The audience key of every staff and admin user (a module adds it to an event staff should see). */
export const staffAudience = 'role:staff';

/** The keys a user's stream matches against an event's audience. */
export function audienceKeysOf(principal: { userId: string; role: string }): string[] {
  const keys = [principal.userId, `role:${principal.role}`];
  if (principal.role === 'admin') keys.push(staffAudience);
  return keys;
}

/** The sink a stream writes to: an http.ServerResponse, or anything that behaves like one. */
export interface StreamSink {
  write(chunk: string): boolean;
  readonly writableLength: number;
  end(): void;
  destroy(): void;
  once(event: 'close' | 'drain', listener: () => void): unknown;
  removeListener(event: 'close' | 'drain', listener: () => void): unknown;
}

/** Starts listening for wake-ups; answers the function that stops it. */
export type Listen = (onNotify: () => void, onError: (err: Error) => void) => Promise<() => Promise<void>>;

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

export interface StreamOwner { userId: string; keys: string[] }

/** A place for one stream, taken by admit(): open the stream on it, or give it back. */
export interface Admission {
  /** Runs the stream on the sink until it closes (which gives the place back); answers once it is live. */
  open(sink: StreamSink, lastEventId?: string): Promise<void>;
  /** Gives the place back without opening a stream. */
  release(): void;
}

/** How long a client refused for want of a place is told to wait (Retry-After). */
export const admissionRetryAfterSeconds = 10;

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

interface Position { tx: bigint; id: string }
interface EventRow { id: string; type: string; audience: string[]; data: unknown; created_at: Date; tx: string }

interface Stream {
  id: string;
  owner: StreamOwner;
  keys: Set<string>;
  sink: StreamSink;
  /** Joined the hub: live events go to it (into `pending` until the replay is done). */
  live: boolean;
  /** Where its replay ends: live events up to here are the replay's to send, not the hub's. */
  upTo: Position | null;
  pending: string[];
  pendingBytes: number;
  closed: boolean;
  /** Gives its admission's place back. */
  leave: () => void;
}

function isAfter(a: Position, b: Position): boolean {
  return a.tx > b.tx || (a.tx === b.tx && a.id > b.id);
}

function frameOf(row: EventRow): string {
  const body = { id: row.id, type: row.type, createdAt: row.created_at.toISOString(), data: row.data };
  // JSON.stringify never emits a raw newline, so the payload is one data line.
  return `id: ${row.id}\nevent: ${row.type}\ndata: ${JSON.stringify(body)}\n\n`;
}

const eventIdPattern = /^evt_[0-9a-z]{26}$/;

export function createEventHub(db: Db, options: EventHubOptions): EventHub {
  const maxBuffered = options.maxBufferedBytes ?? 1024 * 1024;
  const batchSize = options.batchSize ?? 500;
  const pollMs = options.pollIntervalMs ?? (options.listen ? 5000 : 250);
  const log = options.log ?? { warn: () => {} };
  const maxStreams = options.maxStreams ?? Infinity;
  const maxStreamsPerUser = options.maxStreamsPerUser ?? Infinity;
  let admitted = 0;
  const admittedPerUser = new Map<string, number>();
  const streams = new Set<Stream>(); // joined the hub
  const byKey = new Map<string, Set<Stream>>(); // the joined streams of each audience key
  const opened = new Set<Stream>(); // every open one, joined or not yet
  const inflight = new Set<Promise<unknown>>();
  // What the hub has dispatched. Null exactly while no stream is joined: the last stream to leave
  // clears it (release), the first to join sets it.
  let cursor: Position | null = null;
  let closed = false;
  let scheduled = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let retryDelayMs = 25;
  let listening: Promise<(() => Promise<void>) | undefined> | undefined;

  // The hub's reads and joins run one at a time, so a stream joins exactly between two fetches.
  let chain: Promise<unknown> = Promise.resolve();
  function exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = chain.then(fn, fn);
    chain = run.catch(() => {});
    return run;
  }

  function track<T>(p: Promise<T>): Promise<T> {
    inflight.add(p);
    void p.finally(() => inflight.delete(p)).catch(() => {});
    return p;
  }

  function drop(s: Stream, reason: string): void {
    if (s.closed) return;
    log.warn({ streamId: s.id, userId: s.owner.userId, buffered: s.sink.writableLength }, `event stream dropped: ${reason}`);
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
    if (streams.delete(s)) {
      for (const key of s.keys) {
        const set = byKey.get(key);
        set?.delete(s);
        if (set?.size === 0) byKey.delete(key);
      }
    }
    if (streams.size === 0) cursor = null;
    void forget(s);
  }

  function forget(s: Stream): Promise<unknown> {
    return track(db.query('DELETE FROM event_stream_connections WHERE id = $1', [s.id])).catch((err: Error) => log.warn({ err }, 'could not remove an event stream presence row'));
  }

  async function horizon(): Promise<Position> {
    return { tx: await readHorizon(db), id: '' };
  }

  async function fetchOnce(): Promise<'more' | 'waiting' | 'done'> {
    if (cursor === null) return 'done';
    const from = cursor;
    const rows = await track(db.query<EventRow & { horizon: string; waiting: boolean; id: string | null }>(
      `WITH h AS (SELECT ${horizonSql} AS horizon)
       SELECT h.horizon::text AS horizon,
              EXISTS (SELECT 1 FROM events w WHERE w.tx >= h.horizon) AS waiting,
              e.id, e.type, e.audience, e.data, e.created_at, e.tx::text AS tx
         FROM h LEFT JOIN LATERAL (
           ${eventsAfterSql('*', { tx: '$1', id: '$2', limit: '$3' }, 'h.horizon')}
         ) e ON true`,
      [from.tx.toString(), from.id, batchSize],
    ));
    if (cursor === null) return 'done'; // every stream left during the read
    const events = rows.filter((r): r is typeof r & { id: string } => r.id !== null);
    for (const row of events) {
      const targets = new Set<Stream>();
      for (const key of row.audience) for (const s of byKey.get(key) ?? []) targets.add(s);
      if (targets.size === 0) continue;
      const frame = frameOf(row);
      const position = { tx: BigInt(row.tx), id: row.id };
      for (const s of targets) deliver(s, frame, position);
    }
    const last = events[events.length - 1];
    if (events.length === batchSize && last) {
      cursor = { tx: BigInt(last.tx), id: last.id };
      return 'more';
    }
    const top: Position = { tx: BigInt(rows[0]!.horizon), id: '' };
    cursor = isAfter(top, from) ? top : from;
    return rows[0]!.waiting ? 'waiting' : 'done';
  }

  async function pump(): Promise<void> {
    scheduled = false; // a wake-up during this fetch schedules another one after it
    try {
      for (;;) {
        const outcome = await fetchOnce();
        if (outcome === 'more') continue;
        if (outcome === 'waiting') retryLater();
        else retryDelayMs = 25;
        return;
      }
    } catch (err) {
      if (!closed) log.warn({ err }, 'reading the event outbox failed; retrying');
      retryLater();
    }
  }

  function retryLater(): void {
    if (retryTimer || closed) return;
    retryTimer = setTimeout(() => { retryTimer = undefined; wake(); }, retryDelayMs);
    retryTimer.unref();
    retryDelayMs = Math.min(1000, retryDelayMs * 2);
  }

  function wake(): void {
    if (closed || scheduled || streams.size === 0) return;
    scheduled = true;
    setImmediate(() => { void exclusive(pump); });
  }

  function startListening(): void {
    if (listening || !options.listen) return;
    listening = options.listen(wake, (err) => log.warn({ err }, 'event stream listener connection failed; reconnecting')).catch((err: Error) => {
      log.warn({ err }, 'could not listen for events; streams fall back to polling');
      listening = undefined;
      return undefined;
    });
  }

  const poll = setInterval(wake, pollMs);
  poll.unref();
  const heartbeat = setInterval(() => {
    if (opened.size === 0) return;
    for (const s of opened) send(s, ': ping\n\n');
    const ids = [...opened].map((s) => s.id);
    void track(db.query('UPDATE event_stream_connections SET seen_at = now() WHERE id = ANY($1::text[])', [ids]))
      .then(() => db.query('DELETE FROM event_stream_connections WHERE seen_at < now() - make_interval(secs => $1)', [Math.max(600, options.heartbeatSeconds * 10)]))
      .catch((err: Error) => log.warn({ err }, 'could not refresh event stream presence'));
  }, options.heartbeatSeconds * 1000);
  heartbeat.unref();

  /** The position to replay from, or null when the id cannot be honoured. */
  async function resumePoint(lastEventId: string): Promise<Position | null> {
    if (!eventIdPattern.test(lastEventId)) return null;
    const [row] = await db.query<{ tx: string }>(
      'SELECT tx::text AS tx FROM events WHERE id = $1 AND created_at > now() - make_interval(hours => $2)',
      [lastEventId, options.retentionHours],
    );
    return row ? { tx: BigInt(row.tx), id: lastEventId } : null;
  }

  function waitForDrain(s: Stream): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        s.sink.removeListener('drain', done);
        s.sink.removeListener('close', done);
        resolve();
      };
      s.sink.once('drain', done);
      s.sink.once('close', done);
    });
  }

  async function replay(s: Stream, from: Position, upTo: Position): Promise<number> {
    let position = from;
    let count = 0;
    for (;;) {
      const rows = await track(db.query<EventRow>(
        `SELECT id, type, audience, data, created_at, tx::text AS tx FROM events
          WHERE audience && $1::text[] AND (tx, id) > ($2::xid8, $3::text) AND (tx, id) <= ($4::xid8, $5::text)
            AND created_at > now() - make_interval(hours => $6)
          ORDER BY tx, id LIMIT $7`,
        [[...s.keys], position.tx.toString(), position.id, upTo.tx.toString(), upTo.id, options.retentionHours, batchSize],
      ));
      for (const row of rows) {
        if (s.closed) return count;
        count++;
        // A replay may be long: it waits for the client to read instead of buffering it all.
        if (!s.sink.write(frameOf(row))) await waitForDrain(s);
      }
      const last = rows[rows.length - 1];
      if (rows.length < batchSize || !last) return count;
      position = { tx: BigInt(last.tx), id: last.id };
    }
  }

  /**
   * The stream's resumption point for its `ready` frame: the newest event of its own audience at or
   * before the position, within the retention window (an older one could not be resumed from).
   * Never another user's event: its id would tell when they last bought or wrote.
   */
  async function newestUpTo(s: Stream, upTo: Position): Promise<string | undefined> {
    const [row] = await db.query<{ id: string }>(
      `SELECT id FROM events
        WHERE audience && $1::text[] AND (tx, id) <= ($2::xid8, $3::text) AND created_at > now() - make_interval(hours => $4)
        ORDER BY tx DESC, id DESC LIMIT 1`,
      [[...s.keys], upTo.tx.toString(), upTo.id, options.retentionHours],
    );
    return row?.id;
  }

  function admit(owner: StreamOwner): Admission {
    const mine = admittedPerUser.get(owner.userId) ?? 0;
    // Connection: close, so that a client hammering the endpoint does not keep the refused
    // connections (and their file descriptors) alive either.
    const refusal = { retryAfterSeconds: admissionRetryAfterSeconds, headers: { connection: 'close' } };
    if (mine >= maxStreamsPerUser) {
      throw new AppError('rate_limited', `You have ${mine} live event streams open, the most one user may have; close one before opening another`, refusal);
    }
    if (admitted >= maxStreams) {
      throw new AppError('rate_limited', 'This server holds as many live event streams as it may; retry shortly', refusal);
    }
    admitted++;
    admittedPerUser.set(owner.userId, mine + 1);
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      admitted--;
      const left = admittedPerUser.get(owner.userId)! - 1;
      if (left === 0) admittedPerUser.delete(owner.userId);
      else admittedPerUser.set(owner.userId, left);
    };
    return { open: (sink, lastEventId) => open(sink, owner, lastEventId, release), release };
  }

  async function open(sink: StreamSink, owner: StreamOwner, lastEventId: string | undefined, leave: () => void): Promise<void> {
    if (closed) {
      leave();
      sink.end();
      return;
    }
    const s: Stream = { id: randomUUID(), owner, keys: new Set(owner.keys), sink, live: false, upTo: null, pending: [], pendingBytes: 0, closed: false, leave };
    opened.add(s);
    sink.once('close', () => release(s));
    // Reconnect after 3 s when the connection drops; the first bytes also flush the headers.
    sink.write('retry: 3000\n\n');
    try {
      startListening();
      await track(db.query('INSERT INTO event_stream_connections (id, user_id) VALUES ($1, $2)', [s.id, owner.userId]));
      // Closed while inserting: its DELETE may have run first, on another connection.
      if (s.closed) return void await forget(s);
      const from = lastEventId ? await resumePoint(lastEventId) : null;
      if (s.closed) return;
      // The replay goes up to the horizon now, even when the hub's own position lags behind it
      // (it has not read the latest commits yet): what the hub reads later up to there is skipped
      // for this stream, so the replay is as complete as it can be, without duplicates.
      const upTo = await exclusive(async (): Promise<Position | null> => {
        const now = await horizon();
        if (cursor === null) cursor = now;
        if (s.closed) {
          // Gone while waiting: join nothing, and leave no position behind for a later stream.
          if (streams.size === 0) cursor = null;
          return null;
        }
        streams.add(s);
        for (const key of s.keys) {
          const set = byKey.get(key) ?? new Set<Stream>();
          set.add(s);
          byKey.set(key, set);
        }
        s.upTo = isAfter(now, cursor) ? now : cursor;
        return s.upTo;
      });
      if (s.closed || upTo === null) return;
      const replayed = from ? await replay(s, from, upTo) : 0;
      if (s.closed) return;
      const readyId = await newestUpTo(s, upTo);
      const ready = { resumed: from !== null, replayed };
      send(s, `${readyId ? `id: ${readyId}\n` : ''}event: ready\ndata: ${JSON.stringify(ready)}\n\n`);
      s.live = true;
      const pending = s.pending;
      s.pending = [];
      s.pendingBytes = 0;
      for (const frame of pending) send(s, frame);
      // Anything committed while this stream was joining.
      wake();
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
      clearInterval(poll);
      clearInterval(heartbeat);
      clearTimeout(retryTimer);
      const stop = await listening;
      await stop?.().catch(() => {});
      await chain;
      await Promise.allSettled([...inflight]);
    },
    get stats() {
      return { open: opened.size, joined: streams.size, keys: byKey.size, admitted, users: admittedPerUser.size, queries: inflight.size, following: cursor !== null };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Where wake-ups come from

/** LISTEN on a dedicated PostgreSQL connection (not one of the pool's), reconnecting when it drops. */
export function postgresListener(url: string): Listen {
  return async (onNotify, onError) => {
    let client: pg.Client | undefined;
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const retry = () => {
      if (stopped || timer) return;
      timer = setTimeout(() => { timer = undefined; void connect(); }, 1000);
      timer.unref();
    };
    const connect = async (): Promise<void> => {
      const c = new pg.Client({ connectionString: url, keepAlive: true });
      c.on('notification', (msg) => { if (msg.channel === eventChannel) onNotify(); });
      c.on('error', (err) => onError(err));
      c.on('end', () => {
        if (client === c) client = undefined;
        retry();
      });
      try {
        await c.connect();
        await c.query(`LISTEN ${eventChannel}`);
      } catch (err) {
        onError(err as Error);
        await c.end().catch(() => {});
        retry();
        return;
      }
      if (stopped) {
        await c.end().catch(() => {});
        return;
      }
      client = c;
      onNotify(); // whatever was committed while nobody listened
    };
    await connect();
    return async () => {
      stopped = true;
      clearTimeout(timer);
      await client?.end().catch(() => {});
    };
  };
}

/** PGlite's own LISTEN (the embedded database is one process, so this sees every commit). */
export function pgliteListener(pglite: PGlite): Listen {
  return async (onNotify) => {
    const unlisten = await pglite.listen(eventChannel, () => onNotify());
    return async () => { await unlisten(); };
  };
}

/**
 * How this process learns of new events on db: PGlite's listen; a dedicated connection to
 * databaseUrl on PostgreSQL; without a URL (a Db built by hand), only the poll.
 */
export function listenerFor(db: Db, databaseUrl: string | undefined): Listen | null {
  const pglite = pgliteOf(db);
  if (pglite) return pgliteListener(pglite);
  return databaseUrl ? postgresListener(databaseUrl) : null;
}

/** Whether the user has a live stream open in any process (seen within two heartbeats). */
export async function hasLiveStream(db: Queryable, userId: string, heartbeatSeconds: number): Promise<boolean> {
  const [row] = await db.query<{ live: boolean }>(
    'SELECT EXISTS (SELECT 1 FROM event_stream_connections WHERE user_id = $1 AND seen_at > now() - make_interval(secs => $2)) AS live',
    [userId, heartbeatSeconds * 2 + 5],
  );
  return row!.live; // EXISTS: always one row
}
