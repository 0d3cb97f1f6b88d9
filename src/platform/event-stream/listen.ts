// Where the hubs' wake-ups come from: after a commit that published events, the process sends
// NOTIFY engine_room_events (platform/events.ts), which PostgreSQL delivers to every listening
// process. Each process listens on one dedicated connection (not from the pool); on PGlite,
// through its own listen API.
import pg from 'pg';
import type { PGlite } from '@electric-sql/pglite';
import type { Db } from '../db.ts';
import { pgliteOf } from '../db.ts';
import { eventChannel } from '../events.ts';

/** Starts listening for wake-ups; answers the function that stops it. */
export type Listen = (onNotify: () => void, onError: (err: Error) => void) => Promise<() => Promise<void>>;

/** LISTEN on a dedicated PostgreSQL connection (not one of the pool's), reconnecting when it drops. */
export function postgresListener(url: string): Listen {
  return async (onNotify, onError) => {
    let client: pg.Client | undefined;
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const retry = () => {
      if (stopped || timer) return;
      timer = setTimeout(() => {
        timer = undefined;
        void connect();
      }, 1000);
      timer.unref();
    };
    const connect = async (): Promise<void> => {
      const c = new pg.Client({ connectionString: url, keepAlive: true });
      c.on('notification', (msg) => {
        if (msg.channel === eventChannel) onNotify();
      });
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
        await c.end().catch(() => {}); // the failure is reported above; a broken client may fail to end too
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
      await client?.end().catch(() => {}); // stopping: a connection already lost has nothing left to end
    };
  };
}

/** PGlite's own LISTEN (the embedded database is one process, so this sees every commit). */
export function pgliteListener(pglite: PGlite): Listen {
  return async (onNotify) => {
    const unlisten = await pglite.listen(eventChannel, () => onNotify());
    return async () => {
      await unlisten();
    };
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
