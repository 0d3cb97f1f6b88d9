// Operator endpoints: the operations overview, the dead-lettered jobs (see them, send them back),
// recorded audit runs, and /metrics/system.
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Db } from '../../platform/db.ts';
import { routeOf } from '../../platform/endpoint.ts';
import { idempotent } from '../../platform/idempotency.ts';
import {
  findJob,
  listFailedJobs,
  listJobs,
  queueExists,
  retryDeadLetters,
  type FailedJobPosition,
  type JobPosition,
} from '../../platform/queue.ts';
import { AppError } from '../../errors.ts';
import * as s from './schemas.ts';
import { auditRunView, overview, runAndRecordAudit } from './service.ts';
import { lastAuditRun } from './repo.ts';
import { cachedSystemMetrics } from './system-metrics.ts';
import { metricsAccess, metricsRouteConfig } from '../../platform/metrics-access.ts';
import { redactedJobData } from './job-data.ts';

export interface OperationsDeps {
  db: Db;
  /** Live streams refresh their row every heartbeat: a row fresher than two of them is an open stream. */
  eventStreamHeartbeatSeconds: number;
  paymentProvider: 'sandbox' | 'stripe';
  /** /metrics/system: served at all (METRICS), and the bearer token it asks for (METRICS_TOKEN). */
  metrics: { enabled: boolean; token: string | undefined };
}

/** How long /metrics/system's figures are kept: the processes flush theirs every 5 s. */
export const systemMetricsTtlMs = 5_000;

function encodeCursor(position: FailedJobPosition): string {
  return Buffer.from(JSON.stringify([position.failedAt, position.id])).toString('base64url');
}

// Both lists page by (a timestamp as the database printed it, a job id): the cursor carries the pair.
function decodeCursor(cursor: string | undefined): FailedJobPosition | undefined {
  if (cursor === undefined) return undefined;
  try {
    const [failedAt, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[];
    if (
      typeof failedAt === 'string' &&
      typeof id === 'string' &&
      !Number.isNaN(Date.parse(failedAt)) &&
      /^[0-9a-f-]{36}$/i.test(id)
    )
      return { failedAt, id };
  } catch {
    // answered below
  }
  throw new AppError('validation_failed', 'The cursor is not one this API gave out', {
    errors: [{ path: '/query/cursor', message: 'is invalid' }],
  });
}

const overviewShareMs = 1_500;

export function operationsAdminRoutes(app: FastifyInstance, deps: OperationsDeps): void {
  const { db } = deps;
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  const streamFreshSeconds = deps.eventStreamHeartbeatSeconds * 2 + 5;

  // Every open console page asks every few seconds, and the answer is the same for all of them
  // (it depends on the window, not on who asks): pages that ask within a second or two share one.
  const recent = new Map<number, { at: number; answer: Promise<s.Overview> }>();
  r.route({
    ...routeOf(s.operationsOverview),
    handler: async (request) => {
      const window = request.query.window;
      const hit = recent.get(window);
      if (hit && Date.now() - hit.at < overviewShareMs) return hit.answer;
      const answer = overview(db, {
        windowSeconds: window,
        streamFreshSeconds,
        sandbox: deps.paymentProvider === 'sandbox',
      });
      recent.set(window, { at: Date.now(), answer });
      answer.catch(() => recent.delete(window));
      return answer;
    },
  });

  r.route({
    ...routeOf(s.listFailedJobs),
    handler: async (request) => {
      const { limit, queue, cursor } = request.query;
      const after = decodeCursor(cursor);
      const rows = await listFailedJobs(db, {
        limit: limit + 1,
        ...(queue ? { queue } : {}),
        ...(after ? { after } : {}),
      });
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        data: page.map(({ position: _, ...j }) => ({
          ...j,
          data: redactedJobData(j.data),
          failedAt: j.failedAt.toISOString(),
        })),
        nextCursor: rows.length > limit && last ? encodeCursor(last.position) : null,
      };
    },
  });

  r.route({
    ...routeOf(s.getJob),
    handler: async (request) => {
      const job = await findJob(db, request.params.id, request.query.queue);
      if (!job) throw new AppError('not_found', 'No job with this id');
      return {
        ...job,
        data: redactedJobData(job.data),
        createdAt: job.createdAt.toISOString(),
        finishedAt: job.finishedAt?.toISOString() ?? null,
      };
    },
  });

  r.route({
    ...routeOf(s.listQueueJobs),
    handler: async (request) => {
      const { queue } = request.params;
      const { state, limit, cursor } = request.query;
      const position = decodeCursor(cursor);
      const after: JobPosition | undefined = position && { createdAt: position.failedAt, id: position.id };
      if (!(await queueExists(db, queue))) throw new AppError('not_found', 'No queue of this name');
      const rows = await listJobs(db, { queue, state, limit: limit + 1, ...(after ? { after } : {}) });
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        data: page.map(({ position: _, ...j }) => ({
          ...j,
          data: redactedJobData(j.data),
          createdAt: j.createdAt.toISOString(),
          startAfter: j.startAfter.toISOString(),
          startedAt: j.startedAt?.toISOString() ?? null,
          finishedAt: j.finishedAt?.toISOString() ?? null,
        })),
        nextCursor:
          rows.length > limit && last
            ? encodeCursor({ failedAt: last.position.createdAt, id: last.position.id })
            : null,
      };
    },
  });

  r.route({
    ...routeOf(s.retryFailedJob),
    handler: (request, reply) =>
      idempotent(db, request, reply, { required: false }, async (tx) => {
        const [id] = await retryDeadLetters(tx, { id: request.params.id });
        if (!id) throw new AppError('not_found', 'No dead-lettered job with this id');
        return { status: 202, body: { id } };
      }),
  });

  r.route({
    ...routeOf(s.retryAllFailedJobs),
    handler: (request, reply) =>
      idempotent(db, request, reply, { required: true }, async (tx) => {
        const ids = await retryDeadLetters(tx, { queue: request.body.queue });
        return { status: 202, body: { retried: ids.length, ids } };
      }),
  });

  r.route({
    ...routeOf(s.runAudit),
    // Not under the Idempotency-Key's transaction: the audit reads the whole database, and a run
    // is harmless to repeat.
    handler: async (_request, reply) =>
      reply.code(201).send(auditRunView(await runAndRecordAudit(db, { paymentProvider: deps.paymentProvider }))),
  });

  r.route({
    ...routeOf(s.lastAuditRun),
    handler: async () => {
      const run = await lastAuditRun(db);
      if (!run) throw new AppError('not_found', 'The audit has not run yet');
      return auditRunView(run);
    },
  });

  if (!deps.metrics.enabled) return;
  const figures = cachedSystemMetrics(db, { streamFreshSeconds, ttlMs: systemMetricsTtlMs });
  app.get(
    '/metrics/system',
    {
      // Like /metrics: never rate limited, and shed only as low priority (src/platform/load-shedding.ts),
      // so it answers to the metrics token alone and computes its figures at most once per systemMetricsTtlMs.
      config: metricsRouteConfig,
      onRequest: metricsAccess(deps.metrics.token),
      schema: {
        tags: ['operations'],
        summary: 'Prometheus metrics of the whole system (every process), from the database',
        hide: true,
      },
    },
    async (_request, reply) => reply.type('text/plain; version=0.0.4; charset=utf-8').send(await figures()),
  );
}
