// One database port, two engines: real PostgreSQL through a pg pool, or embedded PGlite in this
// process. Everything above this file writes plain SQL with $n parameters against `Queryable` and
// never learns which engine it talks to.
import pg from 'pg';
import { mkdir } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import type { PGlite as PGliteType } from '@electric-sql/pglite';

export type Row = Record<string, unknown>;

export interface Queryable {
  /** One parameterised statement; answers its rows. */
  query<T = Row>(text: string, params?: readonly unknown[]): Promise<T[]>;
  /** A script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
}

/** A connection inside an open transaction. Repository functions that must run in one take a Tx. */
export interface Tx extends Queryable {
  readonly inTransaction: true;
  /**
   * Runs fn once this transaction has committed (never after a rollback), with the database to
   * run follow-up statements on. For signals that must not hold up the commit; fn must not throw
   * (its failure is swallowed: the transaction is already durable).
   */
  afterCommit(fn: (db: Queryable) => unknown): void;
}

export interface Db extends Queryable {
  readonly engine: 'postgres' | 'pglite';
  /**
   * Runs fn in one transaction and commits it. A deadlock or serialization failure rolls back and
   * runs fn again (a few times, with jitter), so fn must not have effects outside the database.
   */
  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  close(): Promise<void>;
  /** The pool's connections now (PostgreSQL); undefined for the embedded database's one connection. */
  poolStats?(): PoolStats;
  /** Statements and transactions waiting for a connection now: the pg pool's waiting clients, or those queued behind PGlite's one connection. */
  waiting(): number;
}

export interface PoolStats {
  size: number;
  inUse: number;
  waiting: number;
}

/**
 * int8 (counts, sums, money) as a JS number, the same on both engines (pg answers a string by
 * default, PGlite a BigInt above 2^53). Every amount we accept is bounded so that it, and every
 * sum made of it, is exact in a number (see src/limits.ts); a value beyond that
 * is refused here, loudly, rather than rounded to a neighbour.
 */
export function parseInt8(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n))
    throw new RangeError(`int8 value ${value} is beyond what a JavaScript number holds exactly (2^53 - 1)`);
  return n;
}

const int8 = 20;
pg.types.setTypeParser(int8, parseInt8);

const retryableCodes = new Set(['40001', '40P01']);
const maxAttempts = 5;

export function isRetryable(err: unknown): boolean {
  return typeof err === 'object' && err !== null && retryableCodes.has((err as { code?: string }).code ?? '');
}

async function withRetry<T>(attempt: () => Promise<T>): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      if (!isRetryable(err) || n >= maxAttempts) throw err;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * n));
    }
  }
}

// Parameterised statements run as named prepared statements: PostgreSQL parses and plans each text
// once per connection instead of on every call (planning was a third of the database's CPU per
// order). The name is derived from the text. Our SQL texts are constants, so the set is small; the
// cap keeps a text built at run time from growing every connection's statement cache without end.
const preparedNames = new Map<string, string>();
const maxPreparedTexts = 1000;

function statement(text: string, params: readonly unknown[] | undefined): string | pg.QueryConfig {
  if (!params || params.length === 0) return text;
  let name = preparedNames.get(text);
  if (name === undefined) {
    if (preparedNames.size >= maxPreparedTexts) return { text, values: params as unknown[] };
    name = `er_${createHash('sha1').update(text).digest('base64url').slice(0, 20)}`;
    preparedNames.set(text, name);
  }
  return { name, text, values: params as unknown[] };
}

export function openPostgres(url: string, poolSize: number, onError: (err: Error) => void = () => {}): Db {
  const pool = new pg.Pool({ connectionString: url, max: poolSize, connectionTimeoutMillis: 10_000 });
  // An idle client that loses its server emits here; without a listener the process would crash.
  pool.on('error', onError);
  // Every client gets a listener for its whole life, from the moment it connects: an error the
  // server sends while a client is checked out and between statements (it restarts, an admin ends
  // the session), or a second one after the first (the socket closing), is emitted on the client,
  // and one emitted with no listener crashes the process. pg-pool's own listeners cover only an
  // idle client and one running pool.query, each once. Idle clients' errors reach onError through
  // the pool; a transaction's client is marked failed so that it is not given back.
  const failed = new WeakSet<pg.PoolClient | pg.Client>();
  pool.on('connect', (client) => {
    client.on('error', () => {
      failed.add(client);
    });
  });
  const wrap = (client: pg.PoolClient, committed: ((db: Queryable) => unknown)[]): Tx => ({
    inTransaction: true,
    query: async <T>(text: string, params?: readonly unknown[]) =>
      (await client.query(statement(text, params))).rows as T[],
    exec: async (sql: string) => {
      await client.query(sql);
    },
    afterCommit: (fn) => {
      committed.push(fn);
    },
  });
  const db: Db = {
    engine: 'postgres',
    query: async <T>(text: string, params?: readonly unknown[]) =>
      (await pool.query(statement(text, params))).rows as T[],
    exec: async (sql: string) => {
      await pool.query(sql);
    },
    transaction: <T>(fn: (tx: Tx) => Promise<T>) =>
      withRetry(async () => {
        const client = await pool.connect();
        let broken = false;
        try {
          await client.query('BEGIN');
          const committed: ((db: Queryable) => unknown)[] = [];
          const result = await fn(wrap(client, committed));
          await client.query('COMMIT');
          runAfterCommit(committed, db);
          return result;
        } catch (err) {
          try {
            await client.query('ROLLBACK');
          } catch {
            broken = true;
          }
          throw err;
        } finally {
          client.release(broken || failed.has(client));
        }
      }),
    close: () => pool.end(),
    poolStats: () => ({ size: pool.totalCount, inUse: pool.totalCount - pool.idleCount, waiting: pool.waitingCount }),
    waiting: () => pool.waitingCount,
  };
  return db;
}

function runAfterCommit(callbacks: ((db: Queryable) => unknown)[], db: Queryable): void {
  for (const fn of callbacks) {
    try {
      // After-commit work is a wake-up, best effort: what it would do, a poll does too.
      void Promise.resolve(fn(db)).catch(() => {});
    } catch {
      // The transaction is committed; a follow-up signal that failed changes nothing about it.
    }
  }
}

export async function openPglite(options: { dataDir?: string; loadDataDir?: Blob }): Promise<Db> {
  const { PGlite } = await import('@electric-sql/pglite');
  if (options.dataDir) await mkdir(options.dataDir, { recursive: true });
  const pglite: PGliteType = await PGlite.create({
    dataDir: options.dataDir,
    loadDataDir: options.loadDataDir,
    parsers: { [int8]: parseInt8 },
  });
  // PGlite is one connection: its transaction() holds an exclusive lock, so transactions run one at
  // a time and a query outside one waits for it to finish. Those started and not finished, less
  // the one running, are its queue (load shedding reads it).
  let started = 0;
  const counted = async <T>(run: () => Promise<T>): Promise<T> => {
    started++;
    try {
      return await run();
    } finally {
      started--;
    }
  };
  const db: Db = {
    engine: 'pglite',
    query: <T>(text: string, params?: readonly unknown[]) =>
      counted(async () => (await pglite.query<T>(text, params as unknown[])).rows),
    exec: (sql: string) =>
      counted(async () => {
        await pglite.exec(sql);
      }),
    waiting: () => Math.max(0, started - 1),
    transaction: <T>(fn: (tx: Tx) => Promise<T>) =>
      counted(() =>
        withRetry(async () => {
          const committed: ((db: Queryable) => unknown)[] = [];
          const result = await pglite.transaction((tx) =>
            fn({
              inTransaction: true,
              query: async <R>(text: string, params?: readonly unknown[]) =>
                (await tx.query<R>(text, params as unknown[])).rows,
              exec: async (sql: string) => {
                await tx.exec(sql);
              },
              afterCommit: (cb) => {
                committed.push(cb);
              },
            }),
          );
          runAfterCommit(committed, db);
          return result;
        }),
      ),
    close: () => pglite.close(),
    // Exposed for the test template (dumpDataDir); not part of the port.
    ...({ pglite } as object),
  };
  return db;
}

export function pgliteOf(db: Db): PGliteType | undefined {
  return (db as unknown as { pglite?: PGliteType }).pglite;
}

/** Opens the database the configuration names: PostgreSQL when a URL is given, else PGlite. */
export async function openDatabase(
  config: { databaseUrl: string | undefined; dataDir: string; databasePoolSize: number },
  onError?: (err: Error) => void,
): Promise<Db> {
  return config.databaseUrl
    ? openPostgres(config.databaseUrl, config.databasePoolSize, onError)
    : openPglite({ dataDir: config.dataDir });
}
