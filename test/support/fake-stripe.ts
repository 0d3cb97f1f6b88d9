// A local fake of the few Stripe endpoints our adapter calls: POST /v1/payment_intents,
// GET /v1/payment_intents/:id and POST /v1/refunds. It honours Idempotency-Key the way Stripe
// documents it (the same key with the same request answers the stored response, with
// Idempotent-Replayed; with another request, 400 idempotency_error), records every request it
// received, and has switches that shape the next call: a card decline, a 500, an answer that
// hangs past the client's timeout, an intent left "processing", and the answers of a Stripe that
// cannot be trusted: an intent charged otherwise than asked, an error of its choosing, a huge body.
//
// It is a fake, not Stripe: it checks only what the adapter sends and answers only the fields the
// adapter reads. Passing against it proves our wiring and our error mapping, not Stripe's behaviour.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedRequest {
  method: string;
  path: string;
  idempotencyKey: string | undefined;
  authorization: string | undefined;
  /** The form body, nested the way Stripe encodes it (metadata[orderId] -> { metadata: { orderId } }). */
  body: Record<string, unknown>;
  /** True when the answer came from the idempotency store. */
  replayed: boolean;
}

export interface FakeIntent {
  id: string;
  object: 'payment_intent';
  amount: number;
  currency: string;
  status: 'succeeded' | 'processing' | 'requires_payment_method';
  payment_method: string;
  metadata: Record<string, string>;
  description: string | null;
  last_payment_error: { code: string; decline_code: string } | null;
}

export interface FakeRefund {
  id: string;
  object: 'refund';
  amount: number;
  currency: string;
  payment_intent: string;
  status: 'succeeded';
}

type NextCall =
  | 'decline'
  | 'server_error'
  | 'hang'
  | 'processing'
  | { tamper: Partial<Pick<FakeIntent, 'amount' | 'currency' | 'metadata' | 'status'>> }
  | { error: { status: number; body: Record<string, unknown> } }
  | { hugeBytes: number };

export interface FakeStripe {
  /** http://127.0.0.1:port, for the adapter's apiBase. */
  url: string;
  /** The secret key the fake accepts; any other answers 401. */
  secretKey: string;
  received: ReceivedRequest[];
  intents: Map<string, FakeIntent>;
  refunds: Map<string, FakeRefund>;
  /** The next POST is declined: 402 card_error (stored under its key, as Stripe does). */
  declineNext(): void;
  /** The next POST fails with 500 before anything happens (nothing stored, nothing created). */
  failNext(): void;
  /** The next POST is carried out and stored, but its answer is held back until close. */
  hangNext(): void;
  /** The next payment intent is created "processing"; settle() later makes it succeed. */
  processingNext(): void;
  settle(intentId: string): void;
  /** The next payment intent is created as asked but recorded, and answered, with these fields instead. */
  tamperNext(fields: Partial<Pick<FakeIntent, 'amount' | 'currency' | 'metadata' | 'status'>>): void;
  /** The next POST answers this error (stored under its key, as Stripe stores a 4xx). */
  errorNext(status: number, error: Record<string, unknown>): void;
  /** The next POST is carried out and stored, and answered with its object padded to this many bytes. */
  hugeNext(bytes: number): void;
  close(): Promise<void>;
}

/** Stripe's form encoding back into objects: a[b][c]=v -> { a: { b: { c: v } } }. */
function parseForm(text: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of new URLSearchParams(text)) {
    const parts = key.split(/[[\]]+/).filter(Boolean);
    let node = out;
    parts.forEach((part, i) => {
      if (i === parts.length - 1) node[part] = value;
      else node = (node[part] ??= {}) as Record<string, unknown>;
    });
  }
  return out;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      data += chunk;
    });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

interface Stored {
  fingerprint: string;
  status: number;
  body: unknown;
}

export async function startFakeStripe(secretKey = 'sk_test_fake_engine_room'): Promise<FakeStripe> {
  const received: ReceivedRequest[] = [];
  const intents = new Map<string, FakeIntent>();
  const refunds = new Map<string, FakeRefund>();
  const byKey = new Map<string, Stored>();
  const held = new Set<ServerResponse>();
  const next: NextCall[] = [];
  let counter = 0;

  const error = (status: number, type: string, message: string, extra: Record<string, unknown> = {}) => ({
    status,
    body: { error: { type, message, ...extra } },
  });

  function createIntent(body: Record<string, unknown>, mode: NextCall | undefined): { status: number; body: unknown } {
    const amount = Number(body.amount);
    if (!Number.isInteger(amount) || amount < 1)
      return error(400, 'invalid_request_error', 'Invalid positive integer', {
        code: 'parameter_invalid_integer',
        param: 'amount',
      });
    if (typeof body.currency !== 'string' || !/^[a-z]{3}$/.test(body.currency))
      return error(400, 'invalid_request_error', 'Invalid currency', { param: 'currency' });
    if (typeof body.payment_method !== 'string')
      return error(400, 'invalid_request_error', 'Missing payment_method', { param: 'payment_method' });
    const intent: FakeIntent = {
      id: `pi_fake_${++counter}`,
      object: 'payment_intent',
      amount,
      currency: body.currency,
      status: mode === 'processing' ? 'processing' : mode === 'decline' ? 'requires_payment_method' : 'succeeded',
      payment_method: body.payment_method,
      metadata: (body.metadata ?? {}) as Record<string, string>,
      description: typeof body.description === 'string' ? body.description : null,
      last_payment_error: mode === 'decline' ? { code: 'card_declined', decline_code: 'insufficient_funds' } : null,
    };
    if (typeof mode === 'object' && 'tamper' in mode) Object.assign(intent, mode.tamper);
    intents.set(intent.id, intent);
    if (mode === 'decline') {
      return error(402, 'card_error', 'Your card has insufficient funds.', {
        code: 'card_declined',
        decline_code: 'insufficient_funds',
        payment_intent: intent,
      });
    }
    return { status: 200, body: intent };
  }

  function createRefund(body: Record<string, unknown>, mode: NextCall | undefined): { status: number; body: unknown } {
    const intent = typeof body.payment_intent === 'string' ? intents.get(body.payment_intent) : undefined;
    if (!intent)
      return error(400, 'invalid_request_error', `No such payment_intent: '${String(body.payment_intent)}'`, {
        code: 'resource_missing',
        param: 'payment_intent',
      });
    if (intent.status !== 'succeeded')
      return error(400, 'invalid_request_error', 'This PaymentIntent does not have a successful charge to refund.', {
        code: 'charge_not_refundable',
      });
    const already = [...refunds.values()]
      .filter((r) => r.payment_intent === intent.id)
      .reduce((sum, r) => sum + r.amount, 0);
    const amount = body.amount === undefined ? intent.amount - already : Number(body.amount);
    if (mode === 'decline' || already + amount > intent.amount) {
      return error(
        400,
        'invalid_request_error',
        `Refund amount (${amount}) is greater than unrefunded amount on charge (${intent.amount - already})`,
        { code: 'amount_too_large', param: 'amount' },
      );
    }
    const refund: FakeRefund = {
      id: `re_fake_${++counter}`,
      object: 'refund',
      amount,
      currency: intent.currency,
      payment_intent: intent.id,
      status: 'succeeded',
    };
    refunds.set(refund.id, refund);
    return { status: 200, body: refund };
  }

  function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'content-type': 'application/json', 'request-id': `req_fake_${++counter}`, ...headers });
    res.end(JSON.stringify(body));
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const body = parseForm(await readBody(req));
    const idempotencyKey =
      typeof req.headers['idempotency-key'] === 'string' ? req.headers['idempotency-key'] : undefined;
    const record: ReceivedRequest = {
      method: req.method ?? '',
      path,
      idempotencyKey,
      authorization: req.headers.authorization,
      body,
      replayed: false,
    };
    received.push(record);

    if (req.headers.authorization !== `Bearer ${secretKey}`) {
      return send(res, 401, { error: { type: 'invalid_request_error', message: 'Invalid API Key provided' } });
    }

    const getIntent = /^\/v1\/payment_intents\/([^/]+)$/.exec(path);
    if (req.method === 'GET' && getIntent) {
      const intent = intents.get(decodeURIComponent(getIntent[1] ?? ''));
      return intent
        ? send(res, 200, intent)
        : send(res, 404, {
            error: { type: 'invalid_request_error', code: 'resource_missing', message: 'No such payment_intent' },
          });
    }
    const handler =
      req.method === 'POST' && path === '/v1/payment_intents'
        ? createIntent
        : req.method === 'POST' && path === '/v1/refunds'
          ? createRefund
          : undefined;
    if (!handler)
      return send(res, 404, {
        error: { type: 'invalid_request_error', message: `Unrecognized request URL (${req.method}: ${path})` },
      });

    const mode = next.shift();
    // A gateway failure in front of the API: nothing ran, nothing is stored under the key.
    if (mode === 'server_error')
      return send(res, 500, { error: { type: 'api_error', message: 'Something went wrong on our end.' } });

    const fingerprint = `${req.method} ${path} ${JSON.stringify(body)}`;
    let answer: { status: number; body: unknown };
    const stored = idempotencyKey === undefined ? undefined : byKey.get(idempotencyKey);
    if (stored && stored.fingerprint !== fingerprint) {
      answer = error(
        400,
        'idempotency_error',
        `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${idempotencyKey}' if you meant to execute a different request.`,
      );
    } else if (stored) {
      record.replayed = true;
      answer = stored;
    } else {
      answer = typeof mode === 'object' && 'error' in mode ? mode.error : handler(body, mode);
      // A snapshot, as Stripe keeps the response it sent, not the object as it is later.
      if (idempotencyKey !== undefined)
        byKey.set(idempotencyKey, {
          fingerprint,
          status: answer.status,
          body: JSON.parse(JSON.stringify(answer.body)),
        });
    }
    // Done and stored, but the answer is lost on the way back: the client times out.
    if (mode === 'hang') {
      held.add(res);
      return;
    }
    if (typeof mode === 'object' && 'hugeBytes' in mode) {
      // Streamed in pieces with no Content-Length, so only counting what arrives can stop it.
      const text = JSON.stringify({ ...(answer.body as object), padding: 'x'.repeat(mode.hugeBytes) });
      res.writeHead(answer.status, { 'content-type': 'application/json', 'request-id': `req_fake_${++counter}` });
      for (let at = 0; at < text.length; at += 64 * 1024) res.write(text.slice(at, at + 64 * 1024));
      res.end();
      return;
    }
    send(res, answer.status, answer.body, record.replayed ? { 'idempotent-replayed': 'true' } : {});
  }

  // A request that fails in the fake is a 500 the adapter under test must handle, not a crash of the test.
  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) send(res, 500, { error: { type: 'api_error', message: 'the fake failed' } });
      else res.destroy();
    });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    secretKey,
    received,
    intents,
    refunds,
    declineNext: () => {
      next.push('decline');
    },
    failNext: () => {
      next.push('server_error');
    },
    hangNext: () => {
      next.push('hang');
    },
    processingNext: () => {
      next.push('processing');
    },
    tamperNext: (fields) => {
      next.push({ tamper: fields });
    },
    errorNext: (status, error) => {
      next.push({ error: { status, body: { error } } });
    },
    hugeNext: (bytes) => {
      next.push({ hugeBytes: bytes });
    },
    settle(intentId) {
      const intent = intents.get(intentId);
      if (!intent) throw new Error(`no intent ${intentId}`);
      intent.status = 'succeeded';
    },
    async close() {
      for (const res of held) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    },
  };
}
