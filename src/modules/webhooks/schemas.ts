import { Type, type Static } from 'typebox';
import { endpoint } from '../../platform/endpoint.ts';
import { IdParams, Page, PageQuery, Timestamp } from '../../platform/schemas.ts';

const tags = ['webhooks'] as const;
const admin = ['admin'] as const;

/** The event types an endpoint can subscribe to (the contract's list). */
// (Keep in step with EventType below, which TypeBox needs spelled out to type it.)
export const webhookEventTypes = [
  'order.created',
  'order.paid',
  'order.payment_failed',
  'order.cancelled',
  'order.fulfilled',
  'message.created',
] as const;
export type WebhookEventType = (typeof webhookEventTypes)[number];
/** Subscribes to every type, including types added later. */
export const allEvents = '*' as const;

// What the service accepts, said by the schema itself: an absolute http(s) URL (RFC 3986, so a
// non-ASCII host is sent in its xn-- form). Whether its address may receive webhooks depends on
// WEBHOOK_ALLOW_PRIVATE_URLS and is checked by the service (destination.ts), as the description says.
const Url = Type.String({
  minLength: 1,
  maxLength: 2048,
  format: 'uri',
  pattern: '^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]',
  description:
    'An absolute http:// or https:// URL that accepts POST, on a public address (loopback, private, link-local and other non-public addresses are refused unless WEBHOOK_ALLOW_PRIVATE_URLS is on)',
});
const EventType = Type.Union([
  Type.Literal('order.created'),
  Type.Literal('order.paid'),
  Type.Literal('order.payment_failed'),
  Type.Literal('order.cancelled'),
  Type.Literal('order.fulfilled'),
  Type.Literal('message.created'),
]);
// Fails to compile when the list and the schema differ.
type InSchema = Static<typeof EventType>;
const _eventTypesMatchSchema: [WebhookEventType] extends [InSchema]
  ? [InSchema] extends [WebhookEventType]
    ? true
    : never
  : never = true;
// Either ["*"] alone or a list of types: the two branches cannot both match.
const Events = Type.Union(
  [
    Type.Array(Type.Literal(allEvents), {
      minItems: 1,
      maxItems: 1,
      description: 'Every type, including types added later',
    }),
    Type.Array(EventType, {
      minItems: 1,
      maxItems: webhookEventTypes.length,
      uniqueItems: true,
      description: 'These types',
    }),
  ],
  { description: `Event types to receive, or ["${allEvents}"] (alone) for every type, including types added later.` },
);

export const WebhookEndpointSchema = Type.Object({
  id: Type.String(),
  url: Type.String(),
  events: Type.Array(Type.String()),
  enabled: Type.Boolean(),
  failingSince: Type.Union([Timestamp, Type.Null()], {
    description: 'First failed attempt since the last success; null while deliveries succeed',
  }),
  disabledAt: Type.Union([Timestamp, Type.Null()]),
  disabledReason: Type.Union([Type.String(), Type.Null()]),
  secretRotatedAt: Type.Union([Timestamp, Type.Null()], {
    description: 'When the secret was last rotated; null if never',
  }),
  previousSecretExpiresAt: Type.Union([Timestamp, Type.Null()], {
    description:
      "While a rotation's grace period runs: when the secret it replaced stops signing deliveries (until then each delivery carries a signature by each secret). Null otherwise.",
  }),
  lastSuccessAt: Type.Union([Timestamp, Type.Null()], {
    description: 'When a delivery to it last succeeded (to the second); null if none has',
  }),
  lastFailureAt: Type.Union([Timestamp, Type.Null()], {
    description: 'When a delivery attempt to it last failed; null if none has',
  }),
  failingDeliveries: Type.Integer({
    minimum: 0,
    description: 'Deliveries tried and not succeeded: being retried, or out of attempts',
  }),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type WebhookEndpoint = Static<typeof WebhookEndpointSchema>;

export const CreatedWebhookEndpointSchema = Type.Object({
  ...WebhookEndpointSchema.properties,
  secret: Type.String({
    description:
      'Signs every delivery (webhook-signature, and the deprecated Engine-Room-Signature); shown only in this answer',
  }),
});

export const rotateWebhookSecret = endpoint({
  operationId: 'rotateWebhookSecret',
  errors: ['invalid_state'],
  example: { params: { id: 'whe_01m8hm26xcycv09qxv6cysjef0' }, body: { gracePeriodSeconds: 86400 } },
  method: 'POST',
  url: '/v1/webhook-endpoints/:id/rotate-secret',
  access: admin,
  tags,
  idempotencyKey: 'optional',
  returnsSecret: true,
  summary: 'Give an endpoint a new signing secret; the old one keeps signing for a grace period',
  description: [
    'Answers the new secret, shown only in this answer (Cache-Control: no-store). Until `previousSecretExpiresAt`, every delivery is signed',
    'with both secrets (two `v1,` entries in `webhook-signature`, two `v1=` in `Engine-Room-Signature`), so the receiver can switch to the new secret',
    'whenever it likes within the grace period without failing a delivery. `gracePeriodSeconds: 0` ends the old secret (and any older one) at once,',
    "for a secret that leaked. While an earlier rotation's grace period runs, another rotation answers 409 invalid_state unless its grace period is 0,",
    'so two rotations at once never hand out a secret that is already replaced. Send an Idempotency-Key: a retry then answers the same secret rather than rotating again.',
  ].join(' '),
  params: IdParams,
  body: Type.Object(
    {
      gracePeriodSeconds: Type.Optional(
        Type.Integer({
          minimum: 0,
          maximum: 604_800,
          default: 86_400,
          description: 'How long the old secret keeps signing deliveries (0 to 7 days; default 1 day)',
        }),
      ),
    },
    { additionalProperties: false },
  ),
  response: {
    200: Type.Object({
      id: Type.String(),
      secret: Type.String({
        description: 'The new signing secret, `whsec_` and base64 (Standard Webhooks form); shown only in this answer',
      }),
      previousSecretExpiresAt: Type.Union([Timestamp, Type.Null()], {
        description: 'When the old secret stops signing deliveries; null when it already has (gracePeriodSeconds 0)',
      }),
    }),
  },
});

export const DeliveryAttemptSchema = Type.Object({
  id: Type.String(),
  eventId: Type.String(),
  eventType: Type.String(),
  attempt: Type.Integer({
    description: 'Counts the attempts at delivering this event to this endpoint, from 1, redeliveries included',
  }),
  succeeded: Type.Boolean(),
  statusCode: Type.Union([Type.Integer(), Type.Null()], {
    description: "The receiver's status; null when it did not answer (timeout, network error)",
  }),
  error: Type.Union([Type.String(), Type.Null()]),
  durationMs: Type.Integer(),
  startedAt: Timestamp,
  finishedAt: Timestamp,
  requestHeaders: Type.Union([Type.Record(Type.String(), Type.String()), Type.Null()], {
    description:
      'The headers sent, the signatures left out ("(not kept)"); null for attempts logged before this was kept',
  }),
  responseBodyExcerpt: Type.Union([Type.String(), Type.Null()], {
    description:
      "The first 2 KiB of the receiver's answer, as UTF-8 text (null when it did not answer). Untrusted: show it as text, never as HTML.",
  }),
  responseBodyTruncated: Type.Boolean({ description: 'The answer was longer than the excerpt' }),
});
export type DeliveryAttempt = Static<typeof DeliveryAttemptSchema>;

const signatureDoc = [
  'Each delivery is a POST of `{ id, type, createdAt, data }` (id: the event id, the same on every retry; receivers dedupe on it),',
  'signed by the Standard Webhooks specification (https://www.standardwebhooks.com): `webhook-id` (the event id), `webhook-timestamp`,',
  '`webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<raw body>">`, keyed by the base64-decoded part of the secret after `whsec_`.',
  'The deprecated `Engine-Room-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" keyed by the whole secret string>` is sent too (see docs/WEBHOOKS.md).',
  'A 2xx answer is success. Anything else, a redirect (never followed), a timeout or a network error is retried with exponential backoff;',
  'an endpoint whose deliveries keep failing for days is disabled, with the reason shown.',
].join(' ');

export const createWebhookEndpoint = endpoint({
  operationId: 'createWebhookEndpoint',
  errors: [],
  example: { body: { url: 'https://shop.example/hooks/engine-room', events: ['order.paid', 'order.cancelled'] } },
  method: 'POST',
  url: '/v1/webhook-endpoints',
  access: admin,
  tags,
  idempotencyKey: 'optional',
  returnsSecret: true,
  summary: 'Register a webhook endpoint; its signing secret is shown only in this answer',
  description: signatureDoc,
  body: Type.Object({ url: Url, events: Events }, { additionalProperties: false }),
  response: { 201: CreatedWebhookEndpointSchema },
});

export const listWebhookEndpoints = endpoint({
  operationId: 'listWebhookEndpoints',
  errors: [],
  method: 'GET',
  url: '/v1/webhook-endpoints',
  access: admin,
  tags,
  summary: 'Webhook endpoints, newest first (never their secrets)',
  querystring: PageQuery,
  response: { 200: Page(WebhookEndpointSchema) },
});

export const getWebhookEndpoint = endpoint({
  operationId: 'getWebhookEndpoint',
  errors: [],
  example: { params: { id: 'whe_01m8hm26xcycv09qxv6cysjef0' } },
  method: 'GET',
  url: '/v1/webhook-endpoints/:id',
  access: admin,
  tags,
  summary: 'One webhook endpoint (never its secret)',
  params: IdParams,
  response: { 200: WebhookEndpointSchema },
});

export const updateWebhookEndpoint = endpoint({
  operationId: 'updateWebhookEndpoint',
  errors: [],
  example: { params: { id: 'whe_01m8hm26xcycv09qxv6cysjef0' }, body: { enabled: false } },
  method: 'PATCH',
  url: '/v1/webhook-endpoints/:id',
  access: admin,
  tags,
  summary: 'Change the URL or events of an endpoint, or disable or re-enable it',
  description:
    'Re-enabling clears the disabled reason and the failure streak. Events that happened while an endpoint was disabled are not sent to it; redeliver them one by one if needed.',
  params: IdParams,
  body: Type.Object(
    { url: Type.Optional(Url), events: Type.Optional(Events), enabled: Type.Optional(Type.Boolean()) },
    { additionalProperties: false, minProperties: 1 },
  ),
  response: { 200: WebhookEndpointSchema },
});

export const deleteWebhookEndpoint = endpoint({
  operationId: 'deleteWebhookEndpoint',
  errors: [],
  example: { params: { id: 'whe_01m8hm26xcycv09qxv6cysjef0' } },
  method: 'DELETE',
  url: '/v1/webhook-endpoints/:id',
  access: admin,
  tags,
  summary: 'Delete an endpoint, its pending deliveries and its delivery log',
  params: IdParams,
  response: { 204: Type.Null() },
});

export const listDeliveryAttempts = endpoint({
  operationId: 'listDeliveryAttempts',
  errors: [],
  example: { params: { id: 'whe_01m8hm26xcycv09qxv6cysjef0' } },
  method: 'GET',
  url: '/v1/webhook-endpoints/:id/deliveries',
  access: admin,
  tags,
  summary: 'Every attempt to deliver an event to this endpoint, newest first',
  params: IdParams,
  querystring: Type.Object(
    {
      ...PageQuery.properties,
      eventId: Type.Optional(
        Type.String({ minLength: 1, maxLength: 64, description: 'Only the attempts for this event' }),
      ),
    },
    { additionalProperties: false },
  ),
  response: { 200: Page(DeliveryAttemptSchema) },
});

export const RedeliverySchema = Type.Object({
  endpointId: Type.String(),
  eventId: Type.String(),
  eventType: Type.String(),
  status: Type.Literal('pending'),
  attempts: Type.Integer({ description: 'Attempts made so far for this event and endpoint' }),
});

export const redeliverEvent = endpoint({
  operationId: 'redeliverEvent',
  errors: ['invalid_state'],
  example: { params: { id: 'whe_01m8hm26xcycv09qxv6cysjef0', eventId: 'evt_01m8hpnn5sr93dv2h948ef0b2j' } },
  method: 'POST',
  url: '/v1/webhook-endpoints/:id/deliveries/:eventId/redeliver',
  access: admin,
  tags,
  idempotencyKey: 'optional',
  summary: 'Send an event to this endpoint again, now, with the same event id',
  description:
    'Allowed for an event the endpoint was sent before or is subscribed to. A delivery still being retried is replaced by this one. 409 invalid_state for a disabled endpoint.',
  params: Type.Object({ id: IdParams.properties.id, eventId: IdParams.properties.id }),
  response: { 202: RedeliverySchema },
});

export const WebhookDeliverySchema = Type.Object(
  {
    endpointId: Type.String(),
    eventId: Type.String(),
    eventType: Type.String(),
    status: Type.Union([Type.Literal('pending'), Type.Literal('succeeded'), Type.Literal('failed')], {
      description:
        'pending: to be sent or retried; failed: out of attempts, or the endpoint was disabled (redeliver to try again)',
    }),
    attempts: Type.Integer({ description: 'Attempts made so far, redeliveries included' }),
    nextAttemptAt: Type.Union([Timestamp, Type.Null()], {
      description: 'When the queue sends it next; null unless pending',
    }),
    payload: Type.String({
      description: 'The exact request body every attempt sends (JSON text), which the signatures cover',
    }),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { title: 'WebhookDelivery' },
);
export type WebhookDelivery = Static<typeof WebhookDeliverySchema>;

export const getWebhookDelivery = endpoint({
  operationId: 'getWebhookDelivery',
  errors: [],
  example: { params: { id: 'whe_01m8hm26xcycv09qxv6cysjef0', eventId: 'evt_01m8hpnn5sr93dv2h948ef0b2j' } },
  method: 'GET',
  url: '/v1/webhook-endpoints/:id/deliveries/:eventId',
  access: admin,
  tags,
  summary: 'One delivery of an event to this endpoint: its state, attempts, next retry and the payload sent',
  description: 'The headers and answers of its attempts are in GET /v1/webhook-endpoints/{id}/deliveries?eventId=.',
  params: Type.Object({ id: IdParams.properties.id, eventId: IdParams.properties.id }),
  response: { 200: WebhookDeliverySchema },
});
