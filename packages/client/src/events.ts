// GET /v1/events, the Server-Sent Events stream of the signed-in user, read with fetch (so it can
// send Authorization, which the browser's EventSource cannot), and resumed after a disconnect with
// Last-Event-ID: the server replays what was missed, then goes live again.
import { ApiError, type Problem } from './core.ts';

/** One event of the stream. `ready` opens every connection: `data.resumed` is false when a resume could not be honoured (refetch through the API). */
export interface StreamEvent {
  /** The event id (evt_...); absent on `ready`. */
  id?: string;
  /** order.paid, message.created... or ready. */
  event: string;
  /** The parsed data line(s): `{ id, type, createdAt, data }` for an event, `{ resumed, replayed }` for ready. */
  data: unknown;
}

export interface EventStreamOptions {
  baseUrl: string;
  fetch?: typeof fetch;
  credentials?: 'omit' | 'same-origin' | 'include';
  token?: string;
  /** Resume after this event (the last one you handled). */
  lastEventId?: string;
  /** Stops the stream (the iteration then ends). */
  signal?: AbortSignal;
  /** Reconnect after a lost connection (default true), waiting what the server's `retry:` says, at most maxReconnectDelayMs. */
  reconnect?: boolean;
  maxReconnectDelayMs?: number;
  /** Give up after this many failed connection attempts in a row (default 10). */
  maxReconnects?: number;
}

/** Splits an SSE byte stream into events (the WHATWG parsing rules, without the browser parts). */
export async function* parseEventStream(body: ReadableStream<Uint8Array>, onRetry: (ms: number) => void): AsyncGenerator<{ id?: string; event: string; data: string }> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let id: string | undefined;
  let event = '';
  let data: string[] = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let newline: number;
      while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1));
        if (line === '') {
          if (data.length > 0) yield { ...(id !== undefined ? { id } : {}), event: event || 'message', data: data.join('\n') };
          event = '';
          data = [];
          id = undefined;
          continue;
        }
        if (line.startsWith(':')) continue; // a comment: the server's keep-alive
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') data.push(value);
        else if (field === 'event') event = value;
        else if (field === 'id') id = value;
        else if (field === 'retry' && /^\d+$/.test(value)) onRetry(Number(value));
      }
    }
  } finally {
    reader.releaseLock();
  }
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The user's events, for as long as the caller iterates (or until signal aborts); reconnects and resumes by itself. */
export async function* eventStream(options: EventStreamOptions): AsyncGenerator<StreamEvent> {
  const f = options.fetch ?? globalThis.fetch;
  const base = options.baseUrl.replace(/\/+$/, '');
  let lastEventId = options.lastEventId;
  let retryMs = 3000;
  let failures = 0;
  const maxDelay = options.maxReconnectDelayMs ?? 30_000;
  const maxReconnects = options.maxReconnects ?? 10;
  while (!options.signal?.aborted) {
    let res: Response | undefined;
    try {
      const headers: Record<string, string> = { accept: 'text/event-stream' };
      if (options.token) headers.authorization = `Bearer ${options.token}`;
      if (lastEventId) headers['last-event-id'] = lastEventId;
      res = await f(`${base}/v1/events`, {
        headers, ...(options.signal ? { signal: options.signal } : {}), ...(options.credentials ? { credentials: options.credentials } : {}),
      });
      if (res.status !== 200 || !res.body) {
        const text = await res.text();
        // Authentication and permission will not fix themselves by reconnecting.
        if (res.status < 500 && res.status !== 429) throw new ApiError(res.status, parse(text) as Problem);
        throw new Error(`the event stream answered ${res.status}`);
      }
      failures = 0;
      for await (const frame of parseEventStream(res.body, (ms) => { retryMs = ms; })) {
        if (frame.id) lastEventId = frame.id;
        yield { ...(frame.id !== undefined ? { id: frame.id } : {}), event: frame.event, data: parse(frame.data) };
      }
    } catch (err) {
      if (options.signal?.aborted) return;
      if (err instanceof ApiError || options.reconnect === false || ++failures > maxReconnects) throw err;
    }
    if (options.reconnect === false || options.signal?.aborted) return;
    // Wait before reconnecting (longer after repeated failures), unless stopped meanwhile.
    const wait = Math.min(maxDelay, retryMs * 2 ** Math.max(0, failures - 1));
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, wait);
      options.signal?.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
    });
  }
}
