import { Type } from 'typebox';
import { endpoint } from '../../platform/endpoint.ts';

const tags = ['operations'] as const;

const FailedJobSchema = Type.Object({
  id: Type.String(),
  queue: Type.String({ description: 'The queue the job failed in' }),
  data: Type.Unknown(),
  error: Type.String({ description: 'The error of its last attempt' }),
  attempts: Type.Integer(),
  failedAt: Type.String({ format: 'date-time' }),
});

export const listFailedJobs = endpoint({
  operationId: 'listFailedJobs', errors: [],
  method: 'GET', url: '/v1/admin/jobs', access: ['admin'], tags,
  summary: 'Dead-lettered jobs: those that kept failing after every retry',
  querystring: Type.Object({ limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }), queue: Type.Optional(Type.String({ maxLength: 100 })) }, { additionalProperties: false }),
  response: { 200: Type.Object({ data: Type.Array(FailedJobSchema) }) },
});

export const retryFailedJob = endpoint({
  operationId: 'retryFailedJob', errors: [],
  method: 'POST', url: '/v1/admin/jobs/:id/retry', access: ['admin'], tags, idempotencyKey: 'optional',
  summary: 'Send a dead-lettered job back to its queue',
  params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }),
  response: { 202: Type.Object({ id: Type.String({ description: 'The new job' }) }) },
});
