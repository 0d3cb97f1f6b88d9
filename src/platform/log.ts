// Logger options shared by the HTTP server and the command line: JSON lines (pino), secrets
// redacted by path, and the request id on every line written while serving a request.
import type { BaseLogger, LoggerOptions } from 'pino';

export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["x-csrf-token"]', 'res.headers["set-cookie"]', '*.password', '*.token', '*.key', '*.secret'],
      censor: '[redacted]',
    },
  };
}

/** What a job needs of a logger (pino's, or a test's). */
export type JobLog = Pick<BaseLogger, 'error' | 'warn' | 'info'>;
