// The durable queue on both engines: the outbox (a job exists exactly when its transaction
// committed), retries with backoff into the dead-letter queue and back, leases that outlive a dead
// worker, graceful stop, cron schedules fired once per tick, and (PostgreSQL) two worker processes
// sharing one queue without handling a job twice.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { packageRoot } from '../src/platform/paths.ts';
import { engines, freshDatabase, type TestDatabase } from './support/database.ts';
import { openPostgres, type Db } from '../src/platform/db.ts';
import {
  declareQueues,
  deadLetterQueueOf,
  enqueue,
  listFailedJobs,
  retryJob,
  schedule,
  startQueue,
  unschedule,
  work,
  type Queue,
  type QueueOptions,
  type QueueSpec,
} from '../src/platform/queue.ts';

const specs: QueueSpec[] = [
  { name: 't-outbox', retryLimit: 2, retryDelaySeconds: 1, leaseSeconds: 30 },
  { name: 't-dedupe', retryLimit: 2, retryDelaySeconds: 1, leaseSeconds: 30 },
  { name: 't-flaky', retryLimit: 2, retryDelaySeconds: 1, leaseSeconds: 30 },
  { name: 't-dead-worker', retryLimit: 1, retryDelaySeconds: 1, leaseSeconds: 1 },
  { name: 't-slow', retryLimit: 1, retryDelaySeconds: 1, leaseSeconds: 1 },
  { name: 't-stop', retryLimit: 1, retryDelaySeconds: 1, leaseSeconds: 30 },
  { name: 't-cron', retryLimit: 0, retryDelaySeconds: 1, leaseSeconds: 30 },
  { name: 't-many', retryLimit: 2, retryDelaySeconds: 1, leaseSeconds: 30 },
];

// Workers in tests poll often and do nothing else unless a test asks for it.
const quiet: QueueOptions = { pollingIntervalSeconds: 0.05, maintain: false, runSchedules: false };

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(50);
  }
}

async function jobState(db: Db, name: string, id: string): Promise<string | undefined> {
  const [row] = await db.query<{ state: string }>('SELECT state::text FROM pgboss.job WHERE name = $1 AND id = $2', [
    name,
    id,
  ]);
  return row?.state;
}

it('migration 0004 is exactly what the installed pg-boss generates (pg-boss refuses to start on another schema version)', () => {
  const check = spawnSync(process.execPath, [join(packageRoot, 'scripts', 'generate-queue-migration.js'), '--check'], {
    encoding: 'utf8',
  });
  assert.equal(check.status, 0, check.stderr);
});

for (const engine of engines('parity')) {
  // The tests use a queue each and only lower-bound timings, so they run at once (the retries and
  // leases they wait for take seconds each).
  describe(`durable queue [${engine}]`, { concurrency: true }, () => {
    let database: TestDatabase;
    let db: Db;
    const started: Queue[] = [];
    const errors: Error[] = [];
    const start = async (options: QueueOptions = quiet, on: Db = db) => {
      const queue = await startQueue(on, {
        ...options,
        onError: (err) => {
          errors.push(err);
        },
      });
      started.push(queue);
      return queue;
    };

    before(async () => {
      database = await freshDatabase(engine);
      db = database.db;
      await db.exec('CREATE TABLE queue_test_notes (note text PRIMARY KEY)');
      await declareQueues(db, specs);
    });
    after(async () => {
      for (const queue of started) await queue.stop();
      await database.drop();
      assert.deepEqual(
        errors.map((e) => e.message),
        [],
        'errors reported outside jobs',
      );
    });

    it('declares each queue with its options and a dead-letter queue, idempotently', async () => {
      await declareQueues(db, specs); // a second process starting
      const rows = await db.query<{
        name: string;
        retry_limit: number;
        retry_delay: number;
        retry_backoff: boolean;
        expire_seconds: number;
        dead_letter: string;
      }>(
        "SELECT name, retry_limit, retry_delay, retry_backoff, expire_seconds, dead_letter FROM pgboss.queue WHERE name = 't-flaky'",
      );
      assert.deepEqual(rows, [
        {
          name: 't-flaky',
          retry_limit: 2,
          retry_delay: 1,
          retry_backoff: true,
          expire_seconds: 30,
          dead_letter: 't-flaky.dead-letter',
        },
      ]);
      const [dead] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM pgboss.queue WHERE name = $1', [
        deadLetterQueueOf('t-flaky'),
      ]);
      assert.equal(dead!.n, 1);
    });

    it('a job enqueued in a transaction that rolls back never exists; one that commits is handled exactly once, after its change is visible', async () => {
      const queue = await start();
      const handled: { note: string; noteVisible: boolean }[] = [];
      work<{ note: string }>(queue, 't-outbox', async (job) => {
        const rows = await db.query('SELECT 1 FROM queue_test_notes WHERE note = $1', [job.data.note]);
        handled.push({ note: job.data.note, noteVisible: rows.length === 1 });
      });

      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.query('INSERT INTO queue_test_notes (note) VALUES ($1)', ['rolled back']);
          await enqueue(tx, 't-outbox', { note: 'rolled back' });
          throw new Error('the business rule failed after the enqueue');
        }),
        /business rule failed/,
      );
      const id = await db.transaction(async (tx) => {
        await tx.query('INSERT INTO queue_test_notes (note) VALUES ($1)', ['committed']);
        return enqueue(tx, 't-outbox', { note: 'committed' });
      });
      assert.ok(id);
      queue.wake('t-outbox');

      await waitFor('the committed job to complete', async () => (await jobState(db, 't-outbox', id)) === 'completed');
      // A few more polls: nothing else turns up, and the completed job is not fetched again.
      await delay(300);
      assert.deepEqual(handled, [{ note: 'committed', noteVisible: true }]);
      const jobs = await db.query<{ data: unknown }>("SELECT data FROM pgboss.job WHERE name = 't-outbox'");
      assert.deepEqual(jobs, [{ data: { note: 'committed' } }]);
    });

    it('enqueueing into an undeclared queue fails and takes the business change with it', async () => {
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.query('INSERT INTO queue_test_notes (note) VALUES ($1)', ['orphan']);
          await enqueue(tx, 't-nobody-declared-this', {});
        }),
        /not declared/,
      );
      assert.equal((await db.query('SELECT 1 FROM queue_test_notes WHERE note = $1', ['orphan'])).length, 0);
    });

    it('a dedupe key lets one job in, whichever transaction comes second', async () => {
      const first = await db.transaction((tx) =>
        enqueue(tx, 't-dedupe', { n: 1 }, { dedupeKey: 'order-42', startAfter: 3600 }),
      );
      const second = await db.transaction((tx) =>
        enqueue(tx, 't-dedupe', { n: 2 }, { dedupeKey: 'order-42', startAfter: 3600 }),
      );
      const other = await db.transaction((tx) =>
        enqueue(tx, 't-dedupe', { n: 3 }, { dedupeKey: 'order-43', startAfter: 3600 }),
      );
      assert.ok(first && other);
      assert.equal(second, null);
      const rows = await db.query<{ data: unknown }>(
        "SELECT data FROM pgboss.job WHERE name = 't-dedupe' ORDER BY data->>'n'",
      );
      assert.deepEqual(rows, [{ data: { n: 1 } }, { data: { n: 3 } }]);
    });

    it('a failing job is retried with growing, jittered delays, dead-lettered after its last attempt, listed, and retried by the operator', async () => {
      const queue = await start();
      const attempts: { attempt: number; at: number }[] = [];
      let failing = true;
      let succeeded = 0;
      work<{ order: string }>(queue, 't-flaky', async (job) => {
        attempts.push({ attempt: job.attempt, at: Date.now() });
        if (failing) throw new Error(`processor unavailable (attempt ${job.attempt})`);
        succeeded++;
      });
      const id = await db.transaction((tx) => enqueue(tx, 't-flaky', { order: 'ord_1' }));
      assert.ok(id);

      const [dead] = await waitFor('the job to be dead-lettered', async () => {
        const list = await listFailedJobs(db, { limit: 10, queue: 't-flaky' });
        return list.length > 0 && list;
      });
      assert.deepEqual(
        attempts.map((a) => a.attempt),
        [1, 2, 3],
      );
      // Backoff: retry n waits between 2^(n-1) and 2^n times the 1 s delay. Lower bounds only.
      assert.ok(
        attempts[1]!.at - attempts[0]!.at >= 1000 - 20,
        `first retry after ${attempts[1]!.at - attempts[0]!.at} ms`,
      );
      assert.ok(
        attempts[2]!.at - attempts[1]!.at >= 2000 - 20,
        `second retry after ${attempts[2]!.at - attempts[1]!.at} ms`,
      );
      assert.equal(await jobState(db, 't-flaky', id), 'failed');
      assert.equal(dead!.queue, 't-flaky');
      assert.deepEqual(dead!.data, { order: 'ord_1' });
      assert.equal(dead!.error, 'processor unavailable (attempt 3)');
      assert.equal(dead!.attempts, 3);
      assert.ok(dead!.failedAt instanceof Date);
      assert.deepEqual(await listFailedJobs(db, { limit: 10, queue: 't-outbox' }), []);

      failing = false;
      const retried = await retryJob(db, dead!.id);
      assert.ok(retried);
      assert.equal(await retryJob(db, dead!.id), null, 'a dead-lettered job is retried once');
      assert.equal(await retryJob(db, 'not-a-job-id'), null);
      assert.deepEqual(await listFailedJobs(db, { limit: 10, queue: 't-flaky' }), []);
      queue.wake('t-flaky');
      await waitFor(
        'the retried job to complete',
        async () => (await jobState(db, 't-flaky', retried)) === 'completed',
      );
      assert.equal(succeeded, 1);
      assert.equal(attempts.length, 4);
    });

    it('a job fetched by a worker that died is handled again once its lease has expired', async () => {
      const id = await db.transaction((tx) => enqueue(tx, 't-dead-worker', { charge: 'ch_1' }));
      assert.ok(id);
      // The dying worker: it takes the job (active, leased for 1 s) and is gone before completing it.
      const dying = await start();
      const taken = await dying.boss.fetch('t-dead-worker');
      assert.deepEqual(
        taken.map((j) => j.id),
        [id],
      );
      await dying.stop();
      assert.equal(await jobState(db, 't-dead-worker', id), 'active');

      const survivor = await start({ ...quiet, maintain: true, maintenanceIntervalSeconds: 1 });
      const handled: number[] = [];
      work(survivor, 't-dead-worker', async (job) => {
        handled.push(job.attempt);
      });
      await waitFor(
        'the abandoned job to complete',
        async () => (await jobState(db, 't-dead-worker', id)) === 'completed',
      );
      assert.deepEqual(handled, [2]);
    });

    it('a handler that outlives its lease is aborted and its job retried', async () => {
      const queue = await start();
      const seen: { attempt: number; aborted: boolean }[] = [];
      work(queue, 't-slow', async (job) => {
        if (job.attempt === 1) {
          // Hangs until the lease (1 s) runs out and the signal fires.
          await new Promise((resolve) => job.signal.addEventListener('abort', resolve, { once: true }));
          seen.push({ attempt: job.attempt, aborted: job.signal.aborted });
          return;
        }
        seen.push({ attempt: job.attempt, aborted: job.signal.aborted });
      });
      const id = await db.transaction((tx) => enqueue(tx, 't-slow', {}));
      assert.ok(id);
      queue.wake('t-slow');
      await waitFor('the second attempt to complete', async () => (await jobState(db, 't-slow', id)) === 'completed');
      assert.deepEqual(seen, [
        { attempt: 1, aborted: true },
        { attempt: 2, aborted: false },
      ]);
    });

    it('stop lets a running job finish, and hands back one that does not finish in time', async () => {
      // The quick job ends as soon as the stop begins, and has 5 s to be recorded: a 200 ms job
      // under a 0.5 s stop timeout missed it on a busy machine.
      const queue = await start({ ...quiet, stopTimeoutSeconds: 5 });
      let quickStarted = false;
      let hangingStarted = false;
      let stopBegun!: () => void;
      const stopping = new Promise<void>((resolve) => {
        stopBegun = resolve;
      });
      work<{ kind: string }>(
        queue,
        't-stop',
        async (job) => {
          if (job.data.kind === 'quick') {
            quickStarted = true;
            await stopping;
          } else {
            hangingStarted = true;
            await new Promise((resolve) => job.signal.addEventListener('abort', resolve, { once: true }));
            throw new Error('aborted');
          }
        },
        { concurrency: 2 },
      );
      const [quick, hanging] = await db.transaction(async (tx) => [
        await enqueue(tx, 't-stop', { kind: 'quick' }),
        await enqueue(tx, 't-stop', { kind: 'hanging' }),
      ]);
      queue.wake('t-stop');
      await waitFor('both jobs to start', () => quickStarted && hangingStarted);
      const stopped = queue.stop();
      stopBegun();
      await stopped;
      assert.equal(await jobState(db, 't-stop', quick!), 'completed');
      const [row] = await db.query<{ state: string; message: string }>(
        "SELECT state::text, output->>'message' AS message FROM pgboss.job WHERE name = 't-stop' AND id = $1",
        [hanging!],
      );
      assert.deepEqual(row, { state: 'retry', message: 'the worker stopped before the job finished' });
    });

    it('a cron schedule evaluated by two workers runs once per tick', async () => {
      // No waiting for the clock to leave the end of a minute: the test reads which tick each run
      // belongs to instead. pg-boss sends a due tick through its send-it queue as a job deduplicated
      // per schedule and minute (its singleton slot); so a tick sent twice shows as two send-it jobs
      // of one slot, or as more runs than ticks. A minute boundary crossed during the test is a
      // second tick, with one run of its own.
      const options: QueueOptions = { ...quiet, runSchedules: true, scheduleIntervalSeconds: 1 };
      const workers = [await start(options), await start(options)];
      const runs: string[] = [];
      for (const w of workers)
        work(w, 't-cron', async (job) => {
          runs.push(job.id);
        });
      await schedule(workers[0]!, 't-cron', '* * * * *', { task: 'purge' });
      await waitFor('the scheduled job to run', () => runs.length > 0);
      // Both workers evaluate the schedule again every second: three evaluations each at least.
      await delay(3000);
      // Then no new tick, and every tick sent has made its job.
      await unschedule(workers[0]!, 't-cron');
      await waitFor('the ticks sent to be handled', async () => {
        const [row] = await db.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pgboss.job WHERE name = '__pgboss__send-it' AND state NOT IN ('completed', 'cancelled', 'failed')",
        );
        return row!.n === 0;
      });
      const ticks = await db.query<{ slot: string | null }>(
        "SELECT singleton_on::text AS slot FROM pgboss.job WHERE name = '__pgboss__send-it' AND singleton_key = 't-cron' AND state <> 'cancelled' ORDER BY created_on",
      );
      assert.ok(ticks.length >= 1 && ticks.length <= 2, `${ticks.length} ticks sent in about 4 s`);
      assert.ok(
        ticks.every((t) => t.slot !== null),
        'each tick is deduplicated by its minute',
      );
      assert.equal(
        new Set(ticks.map((t) => t.slot)).size,
        ticks.length,
        `a tick sent twice: ${ticks.map((t) => t.slot).join(', ')}`,
      );
      await waitFor('every tick sent to run', () => runs.length >= ticks.length);
      assert.equal(runs.length, ticks.length, 'one run per tick');
      const jobs = await db.query<{ data: unknown }>("SELECT data FROM pgboss.job WHERE name = 't-cron'");
      assert.deepEqual(
        jobs,
        ticks.map(() => ({ data: { task: 'purge' } })),
      );
    });

    if (engine === 'postgres') {
      it('two worker processes over one database handle every job of a batch exactly once between them', async () => {
        // Two pools, as two processes would have.
        const pools = [openPostgres(database.url!, 5), openPostgres(database.url!, 5)];
        try {
          const counts = new Map<number, number>();
          const byWorker = [0, 0];
          const workers = [await start(quiet, pools[0]), await start(quiet, pools[1])];
          workers.forEach((w, i) =>
            work<{ n: number }>(
              w,
              't-many',
              async (job) => {
                counts.set(job.data.n, (counts.get(job.data.n) ?? 0) + 1);
                byWorker[i]!++;
                await delay(2);
              },
              { concurrency: 8 },
            ),
          );
          const total = 400;
          await db.transaction(async (tx) => {
            for (let n = 0; n < total; n++) await enqueue(tx, 't-many', { n });
          });
          await waitFor('every job to complete', async () => {
            const [row] = await db.query<{ n: number }>(
              "SELECT count(*)::int AS n FROM pgboss.job WHERE name = 't-many' AND state = 'completed'",
            );
            return row!.n === total;
          });
          for (const w of workers) await w.stop();
          assert.equal(counts.size, total);
          assert.deepEqual(
            [...counts.values()].filter((c) => c !== 1),
            [],
            'no job handled twice',
          );
          assert.equal(byWorker[0]! + byWorker[1]!, total);
          assert.ok(byWorker[0]! > 0 && byWorker[1]! > 0, `both workers took jobs (${byWorker.join(' / ')})`);
        } finally {
          for (const p of pools) await p.close();
        }
      });
    }
  });
}

it(
  'job tables with many dead rows are vacuumed, so fetching the next job does not read them all',
  { skip: engines('parity').includes('postgres') ? false : 'needs TEST_DATABASE_URL' },
  async () => {
    const { vacuumJobTables, enqueueMany } = await import('../src/platform/queue.ts');
    const database = await freshDatabase('postgres', 2);
    try {
      const db = database.db;
      await declareQueues(db, [{ name: 't-churn', retryLimit: 0, retryDelaySeconds: 1, leaseSeconds: 30 }]);
      await db.transaction((tx) =>
        enqueueMany(
          tx,
          't-churn',
          Array.from({ length: 1500 }, (_, i) => ({ data: { i } })),
        ),
      );
      // Every job taken and completed: two dead versions each.
      await db.query("UPDATE pgboss.job SET state = 'active', started_on = now() WHERE name = $1", ['t-churn']);
      await db.query("UPDATE pgboss.job SET state = 'completed', completed_on = now() WHERE name = $1", ['t-churn']);
      const [table] = await db.query<{ name: string }>(
        'SELECT partition_name AS name FROM pgboss.queue WHERE name = $1',
        ['t-churn'],
      );
      const dead = async () =>
        Number(
          (
            await db.query<{ n: number }>(
              'SELECT n_dead_tup::int AS n FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = $2',
              ['pgboss', table!.name],
            )
          )[0]?.n ?? 0,
        );
      // The statistics arrive a moment after the statements.
      await waitFor('the dead rows to be counted', async () => (await dead()) >= 1000);
      const vacuumed = await vacuumJobTables(db);
      assert.ok(
        vacuumed.some((t) => t.endsWith(table!.name)),
        `vacuumed ${vacuumed.join(', ')}`,
      );
      assert.ok((await dead()) < 1000);
      // A table with few dead rows is left alone.
      assert.ok(!(await vacuumJobTables(db)).some((t) => t.endsWith(table!.name)));
    } finally {
      await database.drop();
    }
  },
);
