// Server timeouts on a real listening server (inject has no sockets): a client that trickles its
// request body is cut off after REQUEST_TIMEOUT_SECONDS, and a live event stream, whose request
// was received long before, stays open past that time.
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { request, type IncomingMessage } from 'node:http';
import { forEachEngine } from './support/app.ts';
import { waitFor } from './support/wait.ts';

forEachEngine(
  'server timeouts',
  (env) => {
    let port: number;
    const sockets: Socket[] = [];
    before(async () => {
      await env().app.listen({ port: 0, host: '127.0.0.1' });
      port = (env().app.server.address() as { port: number }).port;
    });
    after(() => {
      for (const s of sockets) s.destroy();
    });

    /** Opens GET /v1/events and answers a live view of what it received and whether it is still open. */
    async function openStream(token: string) {
      const state = { text: '', ended: false };
      const res = await new Promise<IncomingMessage>((resolve, reject) => {
        const req = request(
          { port, host: '127.0.0.1', path: '/v1/events', headers: { authorization: `Bearer ${token}` } },
          resolve,
        );
        req.on('error', reject);
        req.end();
      });
      sockets.push(res.socket);
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        state.text += chunk;
      });
      res.on('close', () => {
        state.ended = true;
      });
      return { res, state, pings: () => state.text.split(': ping').length - 1 };
    }

    it('cuts off a client that trickles a signup body, while an open event stream stays open past that time', async () => {
      const { customer } = env();
      const stream = await openStream((await customer()).token);
      assert.equal(stream.res.statusCode, 200);
      await waitFor('the stream to be ready', async () =>
        stream.state.text.includes('event: ready') ? true : undefined,
      );

      // Slow loris: the headers promise 1,000 bytes of body, which come one byte every 100 ms.
      const loris = connect({ port, host: '127.0.0.1' });
      sockets.push(loris);
      let answered = '';
      let closed = false;
      loris.setEncoding('utf8');
      loris.on('data', (d: string) => {
        answered += d;
      });
      loris.on('close', () => {
        closed = true;
      });
      loris.on('error', () => {});
      loris.write(
        'POST /v1/auth/signup HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{',
      );
      const trickle = setInterval(() => {
        if (!closed) loris.write(' ');
      }, 100);
      try {
        await waitFor('the slow request to be cut off', async () => (closed ? true : undefined), 60_000);
      } finally {
        clearInterval(trickle);
      }
      assert.match(answered, /^HTTP\/1\.1 408 /, `answered: ${JSON.stringify(answered)}`);

      // The stream was opened before the slow request, so it has been open longer than the timeout.
      const pingsThen = stream.pings();
      await waitFor('a heartbeat after the cut-off', async () =>
        stream.pings() > pingsThen || stream.state.ended ? true : undefined,
      );
      assert.equal(stream.state.ended, false, 'the event stream is still open');
      assert.ok(stream.pings() > pingsThen);
    });

    it('still serves a request that arrives at a normal pace', async () => {
      const res = await fetch(`http://127.0.0.1:${port}/v1/auth/signup`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'prompt@example.com', password: 'correct horse battery staple', name: 'P' }),
      });
      assert.equal(res.status, 201);
    });
  },
  { REQUEST_TIMEOUT_SECONDS: '1', EVENT_STREAM_HEARTBEAT_SECONDS: '1' },
);
