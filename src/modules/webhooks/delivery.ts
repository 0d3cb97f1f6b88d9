// Sending webhooks in two steps:
//
// 1. The dispatcher (dispatchWebhookEvents, run in a loop by every worker process) reads the events
//    outbox itself, in batches, from a durable position (the one row of webhook_dispatch_cursor),
//    up to the horizon, as platform/outbox.ts reads it for every reader, so no event can appear
//    behind the position later and none is skipped. In one transaction it makes one delivery row per event of a webhook type
//    and enabled endpoint subscribed to it, one 'webhooks.deliver' job per row, and moves the
//    position past the batch. The row's unique key (endpoint, event) makes a second read of the
//    same events create nothing; dispatchers in several processes take turns on the position's
//    lock. Publishing an event costs the business transaction one row and no job, and when no
//    endpoint exists the dispatcher only moves its position, once per batch.
// 2. 'webhooks.deliver': one signed POST (signing.ts: Standard Webhooks, and the deprecated
//    Engine-Room-Signature; by the previous secret too while a rotation's grace period runs). Each attempt is written to the delivery log; a failure
//    throws, and the queue retries it with exponential backoff. A delivery that has succeeded is not
//    sent again by a duplicate of its job (at least once, not "as often as the queue likes").
//
// The retry schedule (defaults; pg-boss waits uniformly between d * 2^(n-1) and d * 2^n seconds
// before the n-th retry, d = retryDelaySeconds, counted from the failure):
//   d = 60 s, 11 retries (12 attempts). Retry n waits 1-2, 2-4, 4-8, 8-16, 16-32 min, 32-64 min,
//   1.1-2.1 h, 2.1-4.3 h, 4.3-8.5 h, 8.5-17 h, 17-34 h. The last attempt comes between
//   d * (2^11 - 1) = 34 h and d * (2^12 - 2) = 68 h after the first: always more than a day.
// Then the job is dead-lettered (listFailedJobs / retryJob show and resend it).
//
// Disabling: every failed attempt starts the endpoint's failure streak (failing_since) unless one
// is running; any success ends it. An attempt that fails while the streak is older than
// disableAfterSeconds (3 days by default) disables the endpoint with the reason, and deliveries to
// a disabled endpoint end without retrying. A single event's retries (at most 68 h) cannot disable
// an endpoint by themselves; an endpoint that fails everything it is sent for 3 days is disabled.
//
// Requests never follow redirects (a 3xx is a failure: the URL registered is the only place an
// event goes), have a timeout, and are made outside any database transaction. They go only to
// public addresses unless allowPrivateUrls (destination.ts): checked on the very address each
// connection is made to, after DNS; a refused destination is a failed attempt that connected nowhere.
import http from 'node:http';
import https from 'node:https';
import type { Db } from '../../platform/db.ts';
import { newId } from '../../platform/ids.ts';
import { followOutbox, readFromPosition } from '../../platform/outbox.ts';
import { enqueueMany, work, type Job, type Queue, type QueueSpec } from '../../platform/queue.ts';
import * as repo from './repo.ts';
import { deliverQueue, payloadOf, type DeliverJob } from './service.ts';
import { webhookEventTypes } from './schemas.ts';
import { deliveryHeaders } from './signing.ts';
import { destinationLookup, literalRefusal, RefusedDestination, systemResolve, type Resolve } from './destination.ts';

export { deliverQueue };

export interface WebhookOptions {
  /** Longest wait for a receiver's answer (status and headers), in ms. WEBHOOK_TIMEOUT_MS, default 10 000. */
  timeoutMs?: number;
  /** A failure streak longer than this disables the endpoint. WEBHOOK_DISABLE_AFTER_SECONDS, default 259 200 (3 days). */
  disableAfterSeconds?: number;
  /** Base of the exponential backoff, whole seconds. WEBHOOK_RETRY_DELAY_SECONDS, default 60. */
  retryDelaySeconds?: number;
  /** Retries after the first attempt. WEBHOOK_RETRY_LIMIT, default 11. */
  retryLimit?: number;
  /** Deliveries sent at once by one process. WEBHOOK_CONCURRENCY, default 5. */
  concurrency?: number;
  /** Send to loopback, private and other non-public addresses too. WEBHOOK_ALLOW_PRIVATE_URLS, default false. */
  allowPrivateUrls?: boolean;
  /** How names are resolved (the system's resolver; tests pass their own). */
  resolve?: Resolve;
}

export const webhookDefaults: Readonly<Required<WebhookOptions>> = Object.freeze({
  timeoutMs: 10_000,
  disableAfterSeconds: 3 * 24 * 3600,
  retryDelaySeconds: 60,
  retryLimit: 11,
  concurrency: 5,
  allowPrivateUrls: false,
  resolve: systemResolve,
});

function resolved(options: WebhookOptions): Required<WebhookOptions> {
  return { ...webhookDefaults, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
}

/** The queue of deliveries with these options; declare it with the same options the workers get. */
export function webhookQueuesFor(options: WebhookOptions = {}): QueueSpec[] {
  const o = resolved(options);
  // The lease outlasts the request's timeout, so a slow receiver fails by timeout (recorded in the
  // log), not by lease.
  return [
    {
      name: deliverQueue,
      retryLimit: o.retryLimit,
      retryDelaySeconds: o.retryDelaySeconds,
      leaseSeconds: Math.ceil(o.timeoutMs / 1000) + 60,
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Dispatch

/** Events one dispatcher transaction reads at most. */
export const dispatchBatchSize = 200;

export interface Dispatched {
  /** Events read and passed, of every type. */
  events: number;
  /** Deliveries made (each with its job). */
  deliveries: number;
}

/**
 * Reads up to `limit` events after the dispatcher's position and below the horizon, makes their
 * deliveries and jobs, and moves the position past them, in one transaction. When another
 * dispatcher holds the position it answers { events: 0, deliveries: 0 } at once rather than
 * waiting: that one is doing the work.
 */
export async function dispatchWebhookEvents(db: Db, limit: number = dispatchBatchSize): Promise<Dispatched> {
  const dispatched = await readFromPosition(db, 'webhook_dispatch_cursor', async (tx, from) => {
    const batch = await repo.readAndMakeDeliveries(tx, from, limit, webhookEventTypes);
    // Each delivery job joins the trace that published its event (tracing on).
    if (batch.events > 0)
      await enqueueMany(
        tx,
        deliverQueue,
        batch.made.map(({ traceparent, ...data }) => ({
          data: data satisfies DeliverJob,
          traceparent: traceparent ?? undefined,
        })),
      );
    const last = batch.last_tx !== null && batch.last_id !== null ? { tx: batch.last_tx, id: batch.last_id } : null;
    return { events: batch.events, last, result: { events: batch.events, deliveries: batch.made.length } };
  });
  return dispatched ?? { events: 0, deliveries: 0 };
}

// ---------------------------------------------------------------------------------------------
// Sending (signing.ts signs)

interface Outcome {
  succeeded: boolean;
  statusCode: number | null;
  error: string | null;
  excerpt: string | null;
  truncated: boolean;
  startedAt: Date;
  finishedAt: Date;
  durationMs: number;
}

function failureOf(err: unknown, timeoutMs: number, jobSignal: AbortSignal): string {
  const e = err as { name?: string; message?: string; code?: string };
  if (e?.name === 'TimeoutError') return `no answer within ${timeoutMs} ms`;
  if (jobSignal.aborted) return `the worker gave up: ${(jobSignal.reason as Error)?.message ?? 'aborted'}`;
  if (err instanceof RefusedDestination) return err.message;
  if (e?.code) return `network error: ${e.code}`;
  return `request failed: ${e?.message ?? String(err)}`;
}

/**
 * The abort of one request: after timeoutMs, or when the job's lease runs out. Deliberately not
 * AbortSignal.any([AbortSignal.timeout(ms), jobSignal]): on Node 20 a garbage collection between
 * the request and the timeout loses that signal, and a receiver that never answers then holds the
 * request forever (reproduced with --expose-gc). A controller kept alive by its own timer is not
 * collected, and the race in post() returns even if the request missed the abort.
 */
function requestAbort(timeoutMs: number, jobSignal: AbortSignal) {
  const controller = new AbortController();
  const timer = setTimeout(() => {
    const timeout = new Error(`no answer within ${timeoutMs} ms`);
    timeout.name = 'TimeoutError';
    controller.abort(timeout);
  }, timeoutMs);
  const onJobAbort = () => controller.abort(jobSignal.reason);
  if (jobSignal.aborted) onJobAbort();
  else jobSignal.addEventListener('abort', onJobAbort, { once: true });
  const aborted = new Promise<never>((_, reject) => {
    if (controller.signal.aborted) reject(controller.signal.reason);
    else controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
  });
  aborted.catch(() => {}); // raced below, where its rejection is handled; unraced, it must not be unhandled
  return {
    signal: controller.signal,
    aborted,
    release() {
      clearTimeout(timer);
      jobSignal.removeEventListener('abort', onJobAbort);
    },
  };
}

interface Agents {
  'http:': http.Agent;
  'https:': https.Agent;
}

// Keep-alive connections per destination policy (one pair in production), as fetch would keep them.
const agentsByPolicy = new Map<Resolve, Map<boolean, Agents>>();

function agentsFor(resolve: Resolve, allowPrivate: boolean): Agents {
  const byFlag = agentsByPolicy.get(resolve) ?? new Map<boolean, Agents>();
  agentsByPolicy.set(resolve, byFlag);
  let agents = byFlag.get(allowPrivate);
  if (!agents) {
    // The agents' connections resolve names through the destination check (net.connect's lookup).
    const options = {
      keepAlive: true,
      scheduling: 'lifo' as const,
      timeout: 5000,
      lookup: destinationLookup(resolve, allowPrivate),
    };
    agents = { 'http:': new http.Agent(options), 'https:': new https.Agent(options) };
    byFlag.set(allowPrivate, agents);
  }
  return agents;
}

/** What a receiver may answer in a body; past it, the connection is dropped rather than drained. */
const maxDiscardedBytes = 64 * 1024;
/** The first bytes of the answer kept in the delivery log (response_excerpt). */
export const responseExcerptBytes = 2048;
/** How long to wait for those bytes once the status has come: a slow body does not hold the attempt. */
const excerptWaitMs = 1000;

interface Answered {
  statusCode: number;
  excerpt: string;
  truncated: boolean;
}

/** Bytes as text for the log: UTF-8 (invalid sequences replaced) without NUL, which PostgreSQL text cannot hold. */
function excerptOf(chunks: Buffer[], total: number): { excerpt: string; truncated: boolean } {
  const bytes = Buffer.concat(chunks).subarray(0, responseExcerptBytes);
  return { excerpt: bytes.toString('utf8').replaceAll('\0', '\uFFFD'), truncated: total > responseExcerptBytes };
}

/**
 * Sends the POST and answers the status and the first bytes of the answer's body, once those have
 * come (or the body ended, or excerptWaitMs passed after the headers). The rest is read and dropped.
 */
function send(
  target: URL,
  headers: Record<string, string>,
  body: string,
  o: Required<WebhookOptions>,
  signal: AbortSignal,
): Promise<Answered> {
  const refused = o.allowPrivateUrls ? null : literalRefusal(target); // an address is not looked up
  if (refused) return Promise.reject(refused);
  const protocol = target.protocol === 'https:' ? 'https:' : 'http:';
  const agent = agentsFor(o.resolve, o.allowPrivateUrls)[protocol];
  return new Promise((resolve, reject) => {
    const request = (protocol === 'https:' ? https : http).request(
      target,
      {
        method: 'POST',
        agent,
        signal,
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      },
      (res) => {
        const statusCode = res.statusCode ?? 0;
        const kept: Buffer[] = [];
        let received = 0;
        let answered = false;
        const answer = () => {
          if (answered) return;
          answered = true;
          clearTimeout(excerptWait);
          resolve({ statusCode, ...excerptOf(kept, received) });
        };
        const excerptWait = setTimeout(answer, excerptWaitMs);
        // Read the (usually tiny) answer so that its connection can serve the next delivery, within bounds.
        const cutOff = setTimeout(() => res.destroy(), o.timeoutMs);
        cutOff.unref();
        res.on('data', (chunk: Buffer) => {
          if (received < responseExcerptBytes) kept.push(chunk);
          received += chunk.length;
          if (received > responseExcerptBytes) answer();
          if (received > maxDiscardedBytes) res.destroy();
        });
        res.on('end', answer);
        res.on('close', () => {
          clearTimeout(cutOff);
          answer();
        });
        res.on('error', () => {});
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

/** The request's headers as the log keeps them: the signatures are left out (they prove nothing to a reader and are no one's business). */
function loggedHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) out[name] = /signature/i.test(name) ? '(not kept)' : value;
  return out;
}

async function post(
  url: string,
  headers: Record<string, string>,
  body: string,
  o: Required<WebhookOptions>,
  jobSignal: AbortSignal,
): Promise<Outcome> {
  const startedAt = new Date();
  const t0 = performance.now();
  let statusCode: number | null = null;
  let error: string | null = null;
  let excerpt: string | null = null;
  let truncated = false;
  const abort = requestAbort(o.timeoutMs, jobSignal);
  try {
    const request = send(new URL(url), headers, body, o, abort.signal);
    request.catch(() => {}); // should the race be lost to the abort
    const answered = await Promise.race([request, abort.aborted]);
    ({ statusCode, excerpt, truncated } = answered);
    // Redirects are never followed: a 3xx is a failed attempt.
    if (statusCode >= 300 && statusCode < 400) error = 'redirects are not followed';
  } catch (err) {
    error = failureOf(err, o.timeoutMs, jobSignal);
  } finally {
    abort.release();
  }
  const finishedAt = new Date();
  const succeeded = statusCode !== null && statusCode >= 200 && statusCode < 300;
  return {
    succeeded,
    statusCode,
    error,
    excerpt,
    truncated,
    startedAt,
    finishedAt,
    durationMs: Math.max(0, Math.round(performance.now() - t0)),
  };
}

function duration(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400} day${seconds === 86400 ? '' : 's'}`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  return `${seconds} s`;
}

/** One attempt of one delivery job. Idempotent: a succeeded delivery, or one superseded by a redelivery, sends nothing. */
export async function deliver(db: Db, job: Job<DeliverJob>, options: WebhookOptions = {}): Promise<void> {
  const o = resolved(options);
  const { endpointId, eventId, round } = job.data;
  const d = await repo.findDeliveryToSend(db, endpointId, eventId);
  // Gone (endpoint deleted), superseded by a redelivery, or already delivered.
  if (!d || d.round !== round || d.status === 'succeeded') return;
  if (!d.enabled) {
    await repo.failDelivery(db, endpointId, eventId, round);
    return;
  }

  const body = payloadOf({ id: d.event_id, type: d.event_type, createdAt: d.event_created_at, data: d.event_data });
  const headers = deliveryHeaders({ current: d.secret, previous: d.previous_secret }, d.event_id, body);
  const outcome = await post(d.url, headers, body, o, job.signal);

  // The endpoint's row first, then the delivery's: the order in which deleting an endpoint locks
  // them (its cascade), so a delivery finishing while its endpoint is deleted cannot deadlock.
  const retry = await db.transaction(async (tx) => {
    let disabled = false;
    if (outcome.succeeded) await repo.clearFailureStreak(tx, endpointId);
    else {
      const last = outcome.error ?? `HTTP ${outcome.statusCode}`;
      disabled = await repo.recordFailure(
        tx,
        endpointId,
        o.disableAfterSeconds,
        (since) =>
          `Every delivery failed for more than ${duration(o.disableAfterSeconds)} (since ${since.toISOString()}); the last attempt: ${last}`,
      );
    }
    const attempt = await repo.countAttempt(tx, endpointId, eventId, round, outcome.succeeded);
    if (attempt === undefined) return false; // the endpoint was deleted meanwhile
    await repo.insertAttempt(tx, {
      id: newId('whd'),
      endpoint_id: endpointId,
      event_id: d.event_id,
      event_type: d.event_type,
      attempt,
      succeeded: outcome.succeeded,
      status_code: outcome.statusCode,
      error: outcome.error,
      duration_ms: outcome.durationMs,
      started_at: outcome.startedAt,
      finished_at: outcome.finishedAt,
      request_headers: loggedHeaders(headers),
      response_excerpt: outcome.excerpt,
      response_truncated: outcome.truncated,
    });
    if (outcome.succeeded) return false;
    // The status is for reading only: a dead-lettered job that an operator retries still runs.
    if (disabled || job.attempt > o.retryLimit) await repo.failDelivery(tx, endpointId, eventId, round);
    return !disabled;
  });
  // The message names neither the URL (it may hold a token) nor anything secret.
  if (retry)
    throw new Error(
      `webhook delivery of ${eventId} to ${endpointId} failed (attempt ${job.attempt}): ${outcome.error ?? `HTTP ${outcome.statusCode}`}`,
    );
}

// The dispatcher's loop, for queue.wake(); it is not a pg-boss queue.
const dispatchLoop = 'webhooks.dispatch';

/**
 * Runs the dispatcher and works the deliveries in this process. The deliveries' queue
 * (webhookQueuesFor(options)) must be declared. The dispatcher follows the outbox as every reader
 * does (followOutbox: again at once while it reads full batches, otherwise after the queue's
 * polling interval, or sooner when this process has published an event); its errors (database
 * down) go to the queue's onError, and it stops with the queue.
 */
export function registerWebhookWorkers(queue: Queue, db: Db, options: WebhookOptions = {}): void {
  const o = resolved(options);
  followOutbox(queue, dispatchLoop, async () => {
    const { events, deliveries } = await dispatchWebhookEvents(db, dispatchBatchSize);
    if (deliveries > 0) queue.wake(deliverQueue);
    return events === dispatchBatchSize;
  });
  work<DeliverJob>(queue, deliverQueue, (job) => deliver(db, job, o), { concurrency: o.concurrency });
}
