// Logger options shared by the HTTP server and the command line: JSON lines (pino), secrets
// redacted by path, the request id on every line written while serving a request, and the trace.
import type { BaseLogger, LoggerOptions } from 'pino';
import { traceLogFields, tracingEnabled } from './tracing.ts';

export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers.cookie',
        'req.headers["x-csrf-token"]',
        'res.headers["set-cookie"]',
        '*.password',
        '*.token',
        '*.key',
        '*.secret',
      ],
      censor: '[redacted]',
    },
    // With tracing on, a line written inside a span names it (trace_id, span_id).
    ...(tracingEnabled() ? { mixin: traceLogFields } : {}),
  };
}

/** What a job needs of a logger (pino's, or a test's). */
export type JobLog = Pick<BaseLogger, 'error' | 'warn' | 'info'>;
