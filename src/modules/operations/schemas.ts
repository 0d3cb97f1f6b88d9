import { Type, type Static, type TSchema } from 'typebox';
import { endpoint } from '../../platform/endpoint.ts';
import { MoneySchema, notDotSegment } from '../../platform/schemas.ts';

const tags = ['operations'] as const;
const staffOrAdmin = ['staff', 'admin'] as const;

const jobDataNote =
  'Values under names that suggest a secret (token, secret, password, key, card, authorization…) are replaced by "[redacted]".';

const FailedJobSchema = Type.Object({
  id: Type.String(),
  queue: Type.String({ description: 'The queue the job failed in' }),
  data: Type.Unknown({ description: jobDataNote }),
  error: Type.String({ description: 'The error of its last attempt' }),
  attempts: Type.Integer(),
  failedAt: Type.String({ format: 'date-time' }),
});

export const listFailedJobs = endpoint({
  operationId: 'listFailedJobs',
  errors: [],
  method: 'GET',
  url: '/v1/admin/jobs',
  access: ['admin'],
  tags,
  summary: 'Dead-lettered jobs: those that kept failing after every retry, latest first',
  querystring: Type.Object(
    {
      limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
      queue: Type.Optional(Type.String({ maxLength: 100 })),
      cursor: Type.Optional(Type.String({ maxLength: 200, description: 'The nextCursor of the page before' })),
    },
    { additionalProperties: false },
  ),
  response: {
    200: Type.Object({ data: Type.Array(FailedJobSchema), nextCursor: Type.Union([Type.String(), Type.Null()]) }),
  },
});

const JobStateSchema = Type.Union(
  [
    Type.Literal('waiting'),
    Type.Literal('retrying'),
    Type.Literal('running'),
    Type.Literal('completed'),
    Type.Literal('failed'),
    Type.Literal('cancelled'),
  ],
  {
    description:
      'waiting: to run; retrying: waiting for its next attempt; failed: out of attempts (it was dead-lettered)',
  },
);

const ListedJobSchema = Type.Object(
  {
    id: Type.String(),
    queue: Type.String(),
    state: JobStateSchema,
    data: Type.Unknown({ description: jobDataNote }),
    attempts: Type.Integer({ description: 'Attempts made so far' }),
    createdAt: Type.String({ format: 'date-time' }),
    startAfter: Type.String({
      format: 'date-time',
      description: 'When it may run (for a retrying job: its next attempt)',
    }),
    startedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    finishedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    error: Type.Union([Type.String(), Type.Null()], {
      description: 'The error of its last failed attempt (retrying and failed jobs)',
    }),
  },
  { title: 'Job' },
);

export const listQueueJobs = endpoint({
  operationId: 'listQueueJobs',
  errors: [],
  example: { params: { queue: 'payments.charge' }, query: { state: 'retrying' } },
  method: 'GET',
  url: '/v1/admin/queues/:queue/jobs',
  access: ['admin'],
  tags,
  summary: "One queue's jobs in one state, newest first",
  description: [
    "Jobs finished more than pg-boss's archive delay ago (12 hours) are archived and no longer listed. The dead letters of a queue are the waiting jobs of `<queue>.dead-letter`, or GET /v1/admin/jobs?queue=.",
    'Unknown queues answer 404.',
  ].join('\n\n'),
  params: Type.Object({ queue: Type.String({ minLength: 1, maxLength: 100, pattern: notDotSegment }) }),
  querystring: Type.Object(
    {
      state: JobStateSchema,
      limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
      cursor: Type.Optional(Type.String({ maxLength: 200, description: 'The nextCursor of the page before' })),
    },
    { additionalProperties: false },
  ),
  response: {
    200: Type.Object({ data: Type.Array(ListedJobSchema), nextCursor: Type.Union([Type.String(), Type.Null()]) }),
  },
});

export const retryFailedJob = endpoint({
  operationId: 'retryFailedJob',
  errors: [],
  method: 'POST',
  url: '/v1/admin/jobs/:id/retry',
  access: ['admin'],
  tags,
  idempotencyKey: 'optional',
  summary: 'Send a dead-lettered job back to its queue',
  description:
    "The job goes back with its queue's full retry budget. With an Idempotency-Key, a repeat answers the first outcome; without one, a second retry of the same job is 404 (it is no longer dead-lettered).",
  params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64, pattern: notDotSegment }) }),
  response: { 202: Type.Object({ id: Type.String({ description: 'The new job' }) }) },
});

export const getJob = endpoint({
  operationId: 'getJob',
  errors: [],
  method: 'GET',
  url: '/v1/admin/jobs/:id',
  access: ['admin'],
  tags,
  summary: 'One job of any queue: its state and attempts',
  description:
    'For following a job sent back from the dead letters until the queue has done its part. Jobs finished more than a few days ago are gone (404).',
  params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64, pattern: notDotSegment }) }),
  querystring: Type.Object(
    {
      queue: Type.Optional(
        Type.String({ minLength: 1, maxLength: 100, description: 'Its queue, when known: a faster lookup' }),
      ),
    },
    { additionalProperties: false },
  ),
  response: {
    200: Type.Object({
      id: Type.String(),
      queue: Type.String(),
      state: JobStateSchema,
      data: Type.Unknown({ description: jobDataNote }),
      attempts: Type.Integer({ description: 'Attempts made so far' }),
      createdAt: Type.String({ format: 'date-time' }),
      finishedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
      error: Type.Union([Type.String(), Type.Null()], { description: 'The error of its last failed attempt' }),
    }),
  },
});

export const retryAllFailedJobs = endpoint({
  operationId: 'retryAllFailedJobs',
  errors: [],
  method: 'POST',
  url: '/v1/admin/jobs/retry',
  access: ['admin'],
  tags,
  idempotencyKey: 'required',
  summary: 'Send every dead-lettered job of one queue back to it',
  body: Type.Object({ queue: Type.String({ minLength: 1, maxLength: 100 }) }, { additionalProperties: false }),
  response: {
    202: Type.Object({ retried: Type.Integer({ description: 'Jobs sent back' }), ids: Type.Array(Type.String()) }),
  },
});

const AuditCheckSchema = Type.Object({
  name: Type.String(),
  ok: Type.Boolean(),
  skipped: Type.Optional(
    Type.String({ description: 'Why the check did not run (it reads books this deployment does not keep)' }),
  ),
  violations: Type.Array(Type.Object({}, { additionalProperties: true }), {
    description: 'The offending rows (at most 20 per check)',
  }),
});

export const AuditRunSchema = Type.Object(
  {
    id: Type.Integer(),
    ranAt: Type.String({ format: 'date-time' }),
    ok: Type.Boolean(),
    durationMs: Type.Integer(),
    checks: Type.Array(AuditCheckSchema),
  },
  { title: 'AuditRun' },
);

export const runAudit = endpoint({
  operationId: 'runAudit',
  errors: [],
  method: 'POST',
  url: '/v1/admin/audit-runs',
  access: ['admin'],
  tags,
  summary: 'Run the audit now and record its verdict',
  description:
    'The same checks as GET /v1/admin/audit. The verdict is kept: the operations overview and /metrics/system show the latest run (the workers also run the audit every 10 minutes).',
  response: { 201: AuditRunSchema },
});

export const lastAuditRun = endpoint({
  operationId: 'lastAuditRun',
  errors: [],
  method: 'GET',
  url: '/v1/admin/audit-runs/latest',
  access: ['admin'],
  tags,
  summary: 'The latest recorded audit run, with its violations',
  response: { 200: AuditRunSchema },
});

const Series = (description: string) => Type.Array(Type.Number(), { description });
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

export const OverviewSchema = Type.Object(
  {
    window: Type.Object({
      seconds: Type.Integer(),
      stepSeconds: Type.Integer({ description: 'Width of one point of every series' }),
      from: Type.String({ format: 'date-time' }),
      to: Type.String({ format: 'date-time' }),
      times: Series('Start of each point, in Unix seconds; every series has one value per time'),
    }),
    traffic: Type.Object({
      requestsPerSecond: Series('Requests answered per second, all processes'),
      errors5xxPerSecond: Series('5xx answers per second'),
      errors4xxPerSecond: Series('4xx answers per second'),
      requests: Type.Integer(),
      errors5xx: Type.Integer(),
      errors4xx: Type.Integer(),
      errorRate5xx: Type.Number({ description: 'Share of requests answered 5xx in the window (0 to 1)' }),
      errorRate4xx: Type.Number(),
      latencyMs: Type.Object({
        p50: Nullable(Type.Number()),
        p95: Nullable(Type.Number()),
        p99: Nullable(Type.Number()),
      }),
      topErrors: Type.Array(
        Type.Object({ route: Type.String(), status: Type.Integer(), code: Type.String(), count: Type.Integer() }),
      ),
      shed: Type.Array(
        Type.Object({
          reason: Type.String({
            description:
              'predicted (refused on arrival: the queue ahead would take too long), wait (waited past its target), queue_full, event_loop',
          }),
          priority: Type.String({ description: 'The class the request queued in: critical, normal or low' }),
          count: Type.Integer(),
        }),
        {
          description: 'Requests answered 503 by load shedding in the window, by reason and priority class, most first',
        },
      ),
    }),
    orders: Type.Object({
      placedPerMinute: Series('order.created events per minute'),
      paidPerMinute: Series('order.paid per minute'),
      paymentFailedPerMinute: Series('order.payment_failed per minute'),
      cancelledPerMinute: Series('order.cancelled per minute'),
      placed: Type.Integer(),
      paid: Type.Integer(),
      paymentFailed: Type.Integer(),
      cancelled: Type.Integer(),
      paidAmounts: Type.Array(MoneySchema, { description: 'Total of the orders paid in the window, per currency' }),
    }),
    charges: Type.Object({
      succeededPerMinute: Series('Charges the processor accepted, per minute'),
      declinedPerMinute: Series('Charges declined for good'),
      retriedPerMinute: Series('Charge attempts that failed transiently and will be retried'),
      failedPerMinute: Series('Charge jobs that ran out of attempts (dead-lettered)'),
      succeeded: Type.Integer(),
      declined: Type.Integer(),
      retried: Type.Integer(),
      failed: Type.Integer(),
    }),
    refunds: Type.Object({
      succeeded: Type.Integer(),
      declined: Type.Integer(),
      retried: Type.Integer(),
      amounts: Type.Array(MoneySchema, { description: 'Refunded in the window, per currency' }),
    }),
    queues: Type.Array(
      Type.Object({
        name: Type.String(),
        waiting: Type.Integer(),
        running: Type.Integer(),
        retrying: Type.Integer(),
        deadLetters: Type.Integer(),
        lagSeconds: Type.Number({ description: 'Age of the oldest job that may run now; 0 when none waits' }),
      }),
    ),
    webhooks: Type.Object({
      succeededPerMinute: Series('Delivery attempts that succeeded, per minute'),
      failedPerMinute: Series('Delivery attempts that failed (to be retried, or out of attempts), per minute'),
      succeeded: Type.Integer({ description: 'Delivery attempts that succeeded in the window' }),
      failed: Type.Integer({ description: 'Delivery attempts that failed and will be retried' }),
      deadLettered: Type.Integer({ description: 'Deliveries that ran out of attempts' }),
      endpoints: Type.Integer(),
      failingEndpoints: Type.Integer(),
      disabledEndpoints: Type.Integer(),
      problems: Type.Array(
        Type.Object({
          id: Type.String(),
          host: Type.String({ description: "The URL's host only: its path and query may hold a secret" }),
          enabled: Type.Boolean(),
          failingSince: Nullable(Type.String({ format: 'date-time' })),
          disabledReason: Nullable(Type.String()),
          lastError: Nullable(Type.String()),
          lastAttemptAt: Nullable(Type.String({ format: 'date-time' })),
        }),
      ),
    }),
    processes: Type.Array(
      Type.Object({
        id: Type.String(),
        host: Type.String(),
        pid: Type.Integer(),
        version: Type.String(),
        roles: Type.Array(Type.Union([Type.Literal('api'), Type.Literal('worker')])),
        startedAt: Type.String({ format: 'date-time' }),
        seenAt: Type.String({ format: 'date-time' }),
        rssBytes: Type.Integer(),
        heapUsedBytes: Type.Integer(),
        eventLoopLagMs: Type.Number(),
        pool: Nullable(Type.Object({ size: Type.Integer(), inUse: Type.Integer(), waiting: Type.Integer() })),
        runningJobs: Type.Integer(),
      }),
    ),
    database: Type.Object({
      engine: Type.Union([Type.Literal('postgres'), Type.Literal('pglite')]),
      sizeBytes: Type.Integer(),
      poolSize: Type.Integer({ description: 'Connections in the pools of the live processes' }),
      poolInUse: Type.Integer(),
      poolWaiting: Type.Integer(),
      connections: Nullable(Type.Integer({ description: 'Sessions open on this database (PostgreSQL)' })),
      activeConnections: Nullable(Type.Integer()),
    }),
    eventStreams: Type.Integer({ description: 'Live /v1/events streams open, all processes' }),
    audit: Nullable(
      Type.Object({
        ranAt: Type.String({ format: 'date-time' }),
        ok: Type.Boolean(),
        checks: Type.Array(Type.Object({ name: Type.String(), ok: Type.Boolean(), violations: Type.Integer() })),
      }),
    ),
    sandbox: Nullable(
      Type.Object(
        { outageUntil: Nullable(Type.String({ format: 'date-time' })) },
        { description: 'Only with the sandbox processor' },
      ),
    ),
  },
  { title: 'OperationsOverview' },
);

export type Overview = Static<typeof OverviewSchema>;

export const operationsOverview = endpoint({
  operationId: 'operationsOverview',
  errors: [],
  method: 'GET',
  url: '/v1/admin/operations',
  access: staffOrAdmin,
  tags,
  summary: 'The whole system at a glance: traffic, orders, money, queues, webhooks, processes',
  description:
    'Figures of every API and worker process on this database, for the window asked (15 minutes by default, at most 24 hours). Processes write their counters every 5 seconds, so the last seconds may be missing.',
  querystring: Type.Object(
    {
      window: Type.Integer({ minimum: 60, maximum: 86_400, default: 900, description: 'Seconds back from now' }),
    },
    { additionalProperties: false },
  ),
  response: { 200: OverviewSchema },
});
