// A small reader of GET /v1/events for Node (fetch and a streaming body), for the tests and the
// latency bench (the engine itself never reads its own stream): it parses Server-Sent Events as the HTML standard says and lets
// the caller wait for the next event that matches. Browsers have EventSource for this.

/** id is the frame's own id field (undefined when it had none). */
export interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
}

export interface EventStreamReader {
  readonly status: number;
  readonly contentType: string;
  /** Every event received so far, in order. */
  readonly events: SseEvent[];
  /** Comment lines received (": ping" heartbeats), without the colon. */
  readonly comments: string[];
  /** The id of the last event that had one: what to send as Last-Event-ID when reconnecting. */
  readonly lastEventId: string | undefined;
  /** Answers the next event (after the one the previous call answered) that matches; throws after timeoutMs. */
  next(match?: (e: SseEvent) => boolean, timeoutMs?: number): Promise<SseEvent>;
  /** Resolves when the server ends the stream (or it breaks). */
  readonly ended: Promise<void>;
  close(): void;
}

export async function openEventStream(url: string, headers: Record<string, string> = {}): Promise<EventStreamReader> {
  const controller = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: controller.signal });
  const events: SseEvent[] = [];
  const comments: string[] = [];
  const waiters = new Set<() => void>();
  let readFrom = 0;
  let lastEventId: string | undefined;
  let done = false;

  const notify = () => {
    for (const w of [...waiters]) w();
  };

  let pending = '';
  let id: string | undefined;
  let event = '';
  let data: string[] = [];
  const line = (text: string) => {
    if (text === '') {
      if (data.length > 0) {
        events.push({ id, event: event || 'message', data: data.join('\n') });
        notify();
      }
      event = '';
      data = [];
      id = undefined;
      return;
    }
    if (text.startsWith(':')) {
      comments.push(text.slice(1).trimStart());
      return;
    }
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'event') event = value;
    else if (field === 'id' && !value.includes('\0')) {
      id = value;
      lastEventId = value;
    }
  };

  const ended = (async () => {
    if (!res.body) return;
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        pending += decoder.decode(chunk, { stream: true });
        let at: number;
        while ((at = pending.search(/\r\n|\r|\n/)) >= 0) {
          const eol = pending.startsWith('\r\n', at) ? 2 : 1;
          line(pending.slice(0, at));
          pending = pending.slice(at + eol);
        }
      }
    } catch {
      // aborted by close(), or the connection broke
    } finally {
      done = true;
      notify();
    }
  })();

  return {
    status: res.status,
    contentType: res.headers.get('content-type') ?? '',
    events,
    comments,
    get lastEventId() {
      return lastEventId;
    },
    ended,
    next(match = () => true, timeoutMs = 30_000) {
      return new Promise<SseEvent>((resolve, reject) => {
        const check = () => {
          for (let i = readFrom; i < events.length; i++) {
            if (match(events[i]!)) {
              readFrom = i + 1;
              finish();
              resolve(events[i]!);
              return;
            }
          }
          if (done) {
            finish();
            reject(new Error('the event stream ended before a matching event came'));
          }
        };
        const timer = setTimeout(() => {
          finish();
          reject(new Error(`no matching event within ${timeoutMs} ms`));
        }, timeoutMs);
        const finish = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    close() {
      controller.abort();
    },
  };
}
