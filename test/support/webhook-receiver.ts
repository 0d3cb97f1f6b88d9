// A webhook receiver for tests: a real HTTP server on 127.0.0.1 (a random port) that records every
// request it gets (headers and raw body) and answers as told: 200 by default, or, for the next
// requests, a failure status, a redirect, or no answer at all (it hangs until closed).
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export type Answer =
  { kind: 'status'; status: number } | { kind: 'redirect'; location: string; status?: number } | { kind: 'hang' };

export interface WebhookReceiver {
  /** The URL to register: http://127.0.0.1:<port>/hooks */
  readonly url: string;
  readonly requests: ReceivedRequest[];
  /** TCP connections accepted so far (a refused destination must make none). */
  readonly connections: number;
  /** The next n requests answer this status (500 by default). */
  failNext(n: number, status?: number): void;
  /** The next n requests get no answer until the receiver closes. */
  hangNext(n: number): void;
  /** The next n requests answer a redirect to location (302 by default). */
  redirectNext(n: number, location: string, status?: number): void;
  /** The answer once the queued ones are used up (200 at start). */
  answerAfterwards(answer: Answer): void;
  /** Resolves when at least n requests have arrived; rejects after timeoutMs. */
  waitForRequests(n: number, timeoutMs?: number): Promise<ReceivedRequest[]>;
  close(): Promise<void>;
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const requests: ReceivedRequest[] = [];
  const queued: Answer[] = [];
  let fallback: Answer = { kind: 'status', status: 200 };
  const hanging = new Set<ServerResponse>();

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      requests.push({
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      });
      const answer = queued.shift() ?? fallback;
      if (answer.kind === 'hang') {
        hanging.add(res);
        res.on('close', () => hanging.delete(res));
        return;
      }
      if (answer.kind === 'redirect') {
        res.writeHead(answer.status ?? 302, { location: answer.location }).end();
        return;
      }
      res.writeHead(answer.status, { 'content-type': 'text/plain' }).end(answer.status < 300 ? 'ok' : 'nope');
    });
  });
  let connections = 0;
  server.on('connection', () => {
    connections++;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const push = (n: number, answer: Answer) => {
    for (let i = 0; i < n; i++) queued.push(answer);
  };
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    requests,
    get connections() {
      return connections;
    },
    failNext: (n, status = 500) => push(n, { kind: 'status', status }),
    hangNext: (n) => push(n, { kind: 'hang' }),
    redirectNext: (n, location, status = 302) => push(n, { kind: 'redirect', location, status }),
    answerAfterwards: (answer) => {
      fallback = answer;
    },
    async waitForRequests(n, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (requests.length < n) {
        if (Date.now() > deadline)
          throw new Error(`the receiver got ${requests.length} requests, not ${n}, within ${timeoutMs} ms`);
        await delay(20);
      }
      return requests.slice();
    },
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
