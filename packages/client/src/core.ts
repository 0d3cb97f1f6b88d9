// The runtime of the Engine Room client: builds a request from an operation and its input, sends
// it through a transport, and retries what is safe to retry. It uses only fetch and the Web Crypto
// API, so it runs the same in browsers, Node.js (20+), Deno and Bun. The server's own tests use it
// too, over Fastify's inject instead of fetch (src/client.ts).

export interface RawRequest { method: string; url: string; headers: Record<string, string>; body?: string; signal?: AbortSignal }
export interface RawResponse { status: number; headers: Record<string, string>; body: string }
/** Sends one request and answers its response; throws only when no response came (network error, abort). */
export type Transport = (request: RawRequest) => Promise<RawResponse>;

/** An RFC 9457 problem, as every 4xx and 5xx of the API is. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  code: string;
  detail?: string;
  errors?: { path: string; message: string }[];
}

export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem;
  readonly headers: Record<string, string>;
  constructor(status: number, problem: Problem, headers: Record<string, string> = {}) {
    super(`${status} ${problem?.code ?? 'error'}: ${problem?.detail ?? problem?.title ?? 'no problem body'}`);
    this.name = 'ApiError';
    this.status = status;
    this.problem = problem;
    this.headers = headers;
  }
}

export interface RetryOptions {
  /** Attempts in all, the first included (default 3). */
  attempts?: number;
  /** The longest wait between two attempts, in ms (default 10,000). A Retry-After beyond it is not waited for: the answer is returned. */
  maxDelayMs?: number;
}

export interface CoreOptions {
  transport: Transport;
  /** Retries of 429, 503 and network failures; false for none (default: 3 attempts). */
  retry?: RetryOptions | false;
  /** Generate an Idempotency-Key for an operation that takes one when the caller gives none (default true). */
  idempotencyKeys?: boolean;
  /** Headers sent with every request (the caller's own win). */
  headers?: () => Record<string, string>;
  /** For tests: how to wait between attempts. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface Call {
  method: string;
  /** The path template, with {name} (or :name) placeholders. */
  path: string;
  idempotencyKey?: 'required' | 'optional';
  params?: Record<string, unknown>;
  query?: Record<string, unknown>;
  body?: unknown;
  /** A session token or API key, sent as Authorization: Bearer. */
  token?: string;
  /** Yours, or one the client makes; the same key is sent on each of its retries. */
  key?: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export interface Answer { status: number; ok: boolean; body: unknown; headers: Record<string, string> }

/** A UUID v4 from the Web Crypto API (randomUUID needs a secure context in browsers; getRandomValues does not). */
export function newIdempotencyKey(): string {
  const c = globalThis.crypto;
  if (typeof c.randomUUID === 'function') return c.randomUUID();
  const b = c.getRandomValues(new Uint8Array(16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function fillPath(path: string, params: Record<string, unknown> | undefined): string {
  return path.replace(/\{(\w+)\}|:(\w+)/g, (_, a: string | undefined, b: string | undefined) => {
    const value = params?.[(a ?? b)!];
    if (value === undefined || value === null || value === '') throw new TypeError(`path parameter ${a ?? b} is missing`);
    return encodeURIComponent(String(value));
  });
}

/** Milliseconds to wait from a Retry-After header (seconds, or an HTTP date); undefined when absent or unreadable. */
export function retryAfterMs(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

const safeMethods = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

function defaultSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) { reject(signal.reason); return; }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = () => { clearTimeout(timer); reject(signal!.reason); };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function parseBody(res: RawResponse): unknown {
  if (res.body.length === 0 || !/json/i.test(res.headers['content-type'] ?? '')) return res.body.length === 0 ? null : res.body;
  try {
    return JSON.parse(res.body);
  } catch {
    return res.body;
  }
}

export function createCore(options: CoreOptions) {
  const retry = options.retry === false ? { attempts: 1, maxDelayMs: 0 } : { attempts: options.retry?.attempts ?? 3, maxDelayMs: options.retry?.maxDelayMs ?? 10_000 };
  const sleep = options.sleep ?? defaultSleep;
  const generateKeys = options.idempotencyKeys ?? true;

  /** Sends a call and answers its response, whatever the status; retries 429, 503 and lost requests where that cannot repeat an effect. */
  async function send(call: Call): Promise<Answer> {
    let url = fillPath(call.path, call.params);
    const search = new URLSearchParams();
    for (const [k, v] of Object.entries(call.query ?? {})) if (v !== undefined && v !== null) search.set(k, String(v));
    if ([...search].length > 0) url += `?${search}`;
    const key = call.key ?? (call.idempotencyKey && generateKeys ? newIdempotencyKey() : undefined);
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers?.(), ...call.headers };
    if (call.token) headers.authorization = `Bearer ${call.token}`;
    if (key !== undefined) headers['idempotency-key'] = key;
    if (call.body !== undefined) headers['content-type'] = 'application/json';
    const request: RawRequest = {
      method: call.method, url, headers,
      ...(call.body !== undefined ? { body: JSON.stringify(call.body) } : {}),
      ...(call.signal ? { signal: call.signal } : {}),
    };
    // Sending again cannot repeat an effect when the method is idempotent or the key dedupes it.
    const repeatable = safeMethods.has(call.method) || key !== undefined;
    for (let attempt = 1; ; attempt++) {
      const last = attempt >= retry.attempts;
      const backoff = Math.min(retry.maxDelayMs, 250 * 2 ** (attempt - 1) * (0.5 + Math.random() / 2));
      let res: RawResponse;
      try {
        res = await options.transport(request);
      } catch (err) {
        if (last || !repeatable || call.signal?.aborted) throw err;
        await sleep(backoff, call.signal);
        continue;
      }
      // 429: nothing was done, so trying again is always safe; 503: only when repeatable.
      if (!last && (res.status === 429 || (res.status === 503 && repeatable))) {
        const wait = retryAfterMs(res.headers['retry-after']) ?? backoff;
        if (wait <= retry.maxDelayMs) {
          await sleep(wait, call.signal);
          continue;
        }
      }
      return { status: res.status, ok: res.status < 400, body: parseBody(res), headers: res.headers };
    }
  }

  /** Sends a call and answers the body of a success; throws ApiError with the problem otherwise. */
  async function ok(call: Call): Promise<unknown> {
    const answer = await send(call);
    if (!answer.ok) throw new ApiError(answer.status, answer.body as Problem, answer.headers);
    return answer.body;
  }

  return { send, ok };
}

export type Core = ReturnType<typeof createCore>;

export interface FetchTransportOptions {
  /** Defaults to the global fetch. */
  fetch?: typeof fetch;
  /** 'include' to send the session cookie across origins (a browser app on another origin). */
  credentials?: 'omit' | 'same-origin' | 'include';
}

/** Sends requests with fetch to baseUrl (browsers, Node.js 20+, Deno, Bun). */
export function fetchTransport(baseUrl: string, options: FetchTransportOptions = {}): Transport {
  const base = baseUrl.replace(/\/+$/, '');
  return async (request) => {
    const f = options.fetch ?? globalThis.fetch;
    const res = await f(base + request.url, {
      method: request.method, headers: request.headers, body: request.body ?? null,
      ...(request.signal ? { signal: request.signal } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
    });
    const headers: Record<string, string> = {};
    res.headers.forEach((value, name) => { headers[name] = value; });
    return { status: res.status, headers, body: await res.text() };
  };
}
