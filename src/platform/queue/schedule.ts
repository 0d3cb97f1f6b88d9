// Cron schedules: pg-boss's timekeeper, in every process started with runSchedules. One process
// per interval evaluates the schedules, and the job it sends is deduplicated per schedule and
// minute, so several worker processes still give one run per tick.
import type { Queue } from './start.ts';

/**
 * Enqueues a job into queue `name` (declared) on a cron expression, evaluated in UTC; minute
 * resolution. Stored in the database (one schedule per queue; calling again replaces it), so any
 * process can set it, and the processes started with runSchedules fire it once per tick between
 * them. The job may come up to scheduleIntervalSeconds (plus a few seconds) after the tick.
 */
export async function schedule(queue: Queue, name: string, cron: string, data: object = {}): Promise<void> {
  await queue.boss.schedule(name, cron, data, { tz: 'UTC' });
}

/** Removes the schedule of queue `name` (a schedule retired by a newer release, say). */
export async function unschedule(queue: Queue, name: string): Promise<void> {
  await queue.boss.unschedule(name);
}
