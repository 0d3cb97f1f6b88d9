// The durable job queue: pg-boss 10 on our own database (PostgreSQL or PGlite), with jobs inserted
// in the caller's transaction (the outbox): a business change that rolls back never enqueues, one
// that commits always does. It knows no domain; modules declare their queues, enqueue in their
// transactions, and register handlers. This file is its whole surface: what the modules, the
// wiring and the operator commands may use, each from the file of its role in queue/:
//   boss.ts      pg-boss over our connections (its executeSql port), its schema and tables' upkeep
//   declare.ts   queues and their dead-letter queues, with their retry budget and lease
//   enqueue.ts   jobs inserted in the caller's transaction (one, or many in one statement)
//   start.ts     a started queue in this process: pg-boss, the loops' shared state, graceful stop
//   work.ts      the work loops: a handler per job, per batch, and poll() for work that is not a job
//   schedule.ts  cron schedules
//   admin.ts     what operators see and do: dead letters, jobs by state, retries
//
// Delivery is at least once. A job can run twice: its worker died after the effect but before
// marking it done, its lease ran out while it was still running, or an operator retried it. So
// EVERY HANDLER MUST BE IDEMPOTENT: running it twice has the effect of running it once (check the
// state the job is meant to change, in the same transaction as the change; pass a key that is
// stable for the job to any outside service).
//
// What pg-boss does, and how it is set up here:
// - Schema: built by migration 0004 (generated from pg-boss, see scripts/generate-queue-migration.js);
//   pg-boss starts with migrate: false and only checks its version row, so start is a few queries.
// - Retries: retryLimit attempts after the first, with pg-boss's exponential backoff, which jitters:
//   the n-th retry (n from 1) waits uniformly between retryDelay * 2^(n-1) and retryDelay * 2^n
//   seconds (exponent capped at 16; retryDelay at least 1 s when backing off).
// - Lease: a fetched job is 'active' for at most leaseSeconds (pg-boss's expireInSeconds). A worker
//   here gives up on its handler at that point and fails the attempt; when the worker's process
//   died instead, pg-boss maintenance (every maintenanceIntervalSeconds, in whichever process gets
//   there first) fails the attempt, which then goes through the same retry/backoff path.
// - Dead letter: each queue `x` has a queue `x.dead-letter`. When the last attempt fails, pg-boss
//   marks the job 'failed' and copies its data and error into the dead-letter queue as a new job
//   that nobody works: listFailedJobs shows those, retryJob sends one back to `x`.
// - Cron: pg-boss's timekeeper, in every process started with runSchedules. One process per
//   interval evaluates the schedules, and the job it sends is deduplicated per schedule and minute,
//   so several worker processes still give one run per tick.
export { declareQueues, deadLetterQueueOf, type QueueSpec } from './queue/declare.ts';
export { enqueue, enqueueMany, type RetryBudget } from './queue/enqueue.ts';
export { startQueue, onStop, type Queue, type QueueOptions } from './queue/start.ts';
export { work, workInBatches, poll, type Job } from './queue/work.ts';
export { schedule, unschedule } from './queue/schedule.ts';
export {
  listFailedJobs,
  retryJob,
  retryDeadLetters,
  findJob,
  listJobs,
  nextStartOf,
  type FailedJobPosition,
  type JobPosition,
} from './queue/admin.ts';
export { queueExists, vacuumJobTables } from './queue/boss.ts';
