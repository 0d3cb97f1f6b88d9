// A small HTTP/1.1 client for load: node:http over a keep-alive agent (one socket per concurrent
// request, reused), JSON in and out, a per-request timeout, and the option to abandon a request
// at a chosen moment as a client whose timeout fired would. It answers network failures as
// status 0 with the error's code instead of throwing, so a load loop stays a plain loop.
import http from 'node:http';

export interface Reply {
  /** HTTP status, or 0 when no answer came (connection refused or reset, timeout, abandoned). */
  status: number;
  body: string;
  /** The server replayed a stored response for this Idempotency-Key. */
  replayed: boolean;
  /** The Retry-After header, if any. */
  retryAfter?: string;
  /** For status 0: ECONNREFUSED, ECONNRESET, timeout, abandoned, ... */
  error?: string;
  /** Milliseconds from sending to the end of the answer (or to the failure). */
  ms: number;
}

export interface RequestOptions {
  token?: string;
  idempotencyKey?: string;
  body?: unknown;
  timeoutMs?: number;
  /** Give up on the request after this many milliseconds without an answer (error "abandoned"). */
  abandonAfterMs?: number;
}

export interface HttpClient {
  readonly baseUrl: string;
  request(method: string, path: string, options?: RequestOptions): Promise<Reply>;
  close(): void;
}

export function httpClient(baseUrl: string): HttpClient {
  const url = new URL(baseUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024, scheduling: 'lifo' });
  const port = Number(url.port || 80);
  return {
    baseUrl,
    request(method, path, options = {}) {
      const started = performance.now();
      const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
      const headers: Record<string, string> = { accept: 'application/json' };
      if (payload !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = String(Buffer.byteLength(payload));
      }
      if (options.token) headers.authorization = `Bearer ${options.token}`;
      if (options.idempotencyKey) headers['idempotency-key'] = options.idempotencyKey;
      return new Promise<Reply>((resolve) => {
        let settled = false;
        const timers: NodeJS.Timeout[] = [];
        const finish = (reply: Omit<Reply, 'ms'>) => {
          if (settled) return;
          settled = true;
          for (const t of timers) clearTimeout(t);
          resolve({ ...reply, ms: performance.now() - started });
        };
        const req = http.request({ agent, host: url.hostname, port, method, path, headers }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            body += chunk;
          });
          res.on('end', () =>
            finish({
              status: res.statusCode ?? 0,
              body,
              replayed: res.headers['idempotent-replayed'] === 'true',
              ...(res.headers['retry-after'] ? { retryAfter: res.headers['retry-after'] } : {}),
            }),
          );
          res.on('error', (err: NodeJS.ErrnoException) =>
            finish({ status: 0, body: '', replayed: false, error: err.code ?? err.message }),
          );
        });
        req.on('error', (err: NodeJS.ErrnoException) =>
          finish({ status: 0, body: '', replayed: false, error: err.code ?? err.message }),
        );
        const giveUp = (why: string) => () => {
          finish({ status: 0, body: '', replayed: false, error: why });
          req.destroy();
        };
        if (options.timeoutMs !== undefined) timers.push(setTimeout(giveUp('timeout'), options.timeoutMs));
        if (options.abandonAfterMs !== undefined) timers.push(setTimeout(giveUp('abandoned'), options.abandonAfterMs));
        req.end(payload);
      });
    },
    close: () => agent.destroy(),
  };
}

/** The parsed JSON body of a reply, or undefined when it is not JSON. */
export function jsonOf<T = Record<string, unknown>>(reply: Reply): T | undefined {
  if (reply.body.length === 0) return undefined;
  try {
    return JSON.parse(reply.body) as T;
  } catch {
    return undefined;
  }
}
