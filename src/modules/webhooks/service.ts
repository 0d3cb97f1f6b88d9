// Webhook endpoints as admins manage them, the delivery log, and manual redelivery. Sending lives
// in delivery.ts.
import { randomBytes } from 'node:crypto';
import type { Queryable, Tx } from '../../platform/db.ts';
import { newId } from '../../platform/ids.ts';
import { findEvent } from '../../platform/events.ts';
import { enqueue, nextStartOf } from '../../platform/queue.ts';
import { AppError } from '../../errors.ts';
import * as repo from './repo.ts';
import { urlProblem } from './destination.ts';
import {
  allEvents,
  webhookEventTypes,
  type DeliveryAttempt,
  type WebhookDelivery,
  type WebhookEndpoint,
} from './schemas.ts';

export const deliverQueue = 'webhooks.deliver';

/** What a delivery job carries: the delivery, and the round it was made for. */
export interface DeliverJob {
  endpointId: string;
  eventId: string;
  round: number;
}

/** Only these types are ever sent; other events (internal ones, say) never leave. */
export function isWebhookEventType(type: string): boolean {
  return (webhookEventTypes as readonly string[]).includes(type);
}

/**
 * A new signing secret: `whsec_` and 32 random bytes in standard base64, the Standard Webhooks
 * form (its key is those bytes). The Engine-Room-Signature header keys its HMAC with the whole
 * string instead, so the same secret verifies both headers (signing.ts).
 */
export function newSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/** The exact body of a delivery of the event: the same bytes on every attempt, so the payload the log shows is what was sent. */
export function payloadOf(event: { id: string; type: string; createdAt: Date; data: unknown }): string {
  return JSON.stringify({ id: event.id, type: event.type, createdAt: event.createdAt.toISOString(), data: event.data });
}

export function endpointView(row: repo.EndpointHealthRow, now: Date = new Date()): WebhookEndpoint {
  const inGrace = row.previous_secret_expires_at !== null && row.previous_secret_expires_at > now;
  return {
    id: row.id,
    url: row.url,
    events: row.events,
    enabled: row.enabled,
    failingSince: row.failing_since?.toISOString() ?? null,
    disabledAt: row.disabled_at?.toISOString() ?? null,
    disabledReason: row.disabled_reason,
    secretRotatedAt: row.secret_rotated_at?.toISOString() ?? null,
    previousSecretExpiresAt: inGrace ? row.previous_secret_expires_at!.toISOString() : null,
    lastSuccessAt: row.last_success_at?.toISOString() ?? null,
    lastFailureAt: row.last_failure_at?.toISOString() ?? null,
    failingDeliveries: row.failing_deliveries,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

export function attemptView(row: repo.AttemptRow): DeliveryAttempt {
  return {
    id: row.id,
    eventId: row.event_id,
    eventType: row.event_type,
    attempt: row.attempt,
    succeeded: row.succeeded,
    statusCode: row.status_code,
    error: row.error,
    durationMs: row.duration_ms,
    startedAt: row.started_at.toISOString(),
    finishedAt: row.finished_at.toISOString(),
    requestHeaders: row.request_headers,
    responseBodyExcerpt: row.response_excerpt,
    responseBodyTruncated: row.response_truncated,
  };
}

/** Where deliveries may go: only to public addresses, unless WEBHOOK_ALLOW_PRIVATE_URLS is on. */
export interface UrlPolicy {
  allowPrivateUrls: boolean;
}

/** http(s) only, and not at a private address (destination.ts); the schema has already bounded the length. */
function checkUrl(url: string, policy: UrlPolicy): void {
  const problem = urlProblem(url, policy.allowPrivateUrls);
  if (problem)
    throw new AppError('validation_failed', `The URL ${problem}`, { errors: [{ path: '/url', message: problem }] });
}

export async function createEndpoint(
  db: Queryable,
  input: { url: string; events: string[] },
  policy: UrlPolicy,
): Promise<WebhookEndpoint & { secret: string }> {
  checkUrl(input.url, policy);
  const secret = newSecret();
  const row = await repo.insertEndpoint(db, { id: newId('whe'), url: input.url, events: input.events, secret });
  return { ...endpointView({ ...row, failing_deliveries: 0 }), secret };
}

export async function getEndpoint(db: Queryable, id: string): Promise<WebhookEndpoint> {
  const row = await repo.findEndpointHealth(db, id);
  if (!row) throw new AppError('not_found', 'No such webhook endpoint');
  return endpointView(row);
}

export async function updateEndpoint(
  db: Queryable,
  id: string,
  change: { url?: string; events?: string[]; enabled?: boolean },
  policy: UrlPolicy,
): Promise<WebhookEndpoint> {
  if (change.url !== undefined) checkUrl(change.url, policy);
  if (!(await repo.updateEndpoint(db, id, change))) throw new AppError('not_found', 'No such webhook endpoint');
  return getEndpoint(db, id);
}

/**
 * Gives the endpoint a new secret; the old one keeps signing deliveries, next to the new one, for
 * gracePeriodSeconds (0: it ends now, and so does any older one still in a grace period). Refused
 * with invalid_state while an earlier rotation's grace period runs, unless gracePeriodSeconds is 0.
 */
export async function rotateSecret(
  tx: Tx,
  id: string,
  gracePeriodSeconds: number,
): Promise<{ id: string; secret: string; previousSecretExpiresAt: string | null }> {
  const secret = newSecret();
  const result = await repo.rotateSecret(tx, id, secret, gracePeriodSeconds);
  if (!result) throw new AppError('not_found', 'No such webhook endpoint');
  if (!result.rotated) {
    const { secret_rotated_at: at, previous_secret_expires_at: until } = result.row;
    throw new AppError(
      'invalid_state',
      `The secret was rotated at ${at?.toISOString()} and the one before it still signs deliveries until ${until?.toISOString()}. ` +
        'Rotate again after that, or with gracePeriodSeconds 0 to end every old secret now.',
    );
  }
  return { id, secret, previousSecretExpiresAt: result.row.previous_secret_expires_at?.toISOString() ?? null };
}

export async function deleteEndpoint(db: Queryable, id: string): Promise<void> {
  if (!(await repo.deleteEndpoint(db, id))) throw new AppError('not_found', 'No such webhook endpoint');
}

export async function listAttempts(
  db: Queryable,
  endpointId: string,
  opts: { eventId: string | null; after: string | null; limit: number },
): Promise<repo.AttemptRow[]> {
  if (!(await repo.findEndpoint(db, endpointId))) throw new AppError('not_found', 'No such webhook endpoint');
  return repo.listAttempts(db, endpointId, opts);
}

/**
 * Enqueues a fresh delivery of the event to the endpoint, in the caller's transaction. It starts a
 * new round, so a delivery of the same event still waiting for its next retry stands down: the
 * receiver gets the event once more now, not twice.
 */
export async function redeliver(tx: Tx, endpointId: string, eventId: string) {
  const endpoint = await repo.findEndpoint(tx, endpointId);
  if (!endpoint) throw new AppError('not_found', 'No such webhook endpoint');
  const event = await findEvent(tx, eventId);
  if (!event) throw new AppError('not_found', 'No such event');
  const subscribed =
    endpoint.events.includes(event.type) || (endpoint.events.includes(allEvents) && isWebhookEventType(event.type));
  if (!subscribed && !(await repo.hasDelivery(tx, endpointId, eventId))) {
    throw new AppError('not_found', `This endpoint neither received nor subscribes to ${event.type} events`);
  }
  if (!endpoint.enabled) throw new AppError('invalid_state', 'The endpoint is disabled; enable it before redelivering');
  const { round, attempts } = await repo.startNewRound(tx, endpointId, eventId);
  await enqueue(tx, deliverQueue, { endpointId, eventId, round } satisfies DeliverJob);
  return { endpointId, eventId, eventType: event.type, status: 'pending' as const, attempts };
}

/**
 * One delivery (an event to an endpoint): its state, attempts, when the queue tries it next, and
 * the exact payload it sends. The headers of each attempt are in the attempt log.
 */
export async function getDelivery(db: Queryable, endpointId: string, eventId: string): Promise<WebhookDelivery> {
  const d = await repo.findDelivery(db, endpointId, eventId);
  if (!d) throw new AppError('not_found', 'This endpoint has no delivery of this event');
  const nextAttemptAt =
    d.status === 'pending' ? await nextStartOf(db, deliverQueue, { endpointId, eventId, round: d.round }) : null;
  return {
    endpointId,
    eventId,
    eventType: d.event_type,
    status: d.status,
    attempts: d.attempts,
    nextAttemptAt: nextAttemptAt?.toISOString() ?? null,
    payload: payloadOf({ id: eventId, type: d.event_type, createdAt: d.event_created_at, data: d.event_data }),
    createdAt: d.created_at.toISOString(),
    updatedAt: d.updated_at.toISOString(),
  };
}
