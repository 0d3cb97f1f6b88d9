// The contract as a client generated from /openapi.json sees it: for every operation of the
// document, requests derived from it (valid ones, built by fast-check from the JSON schemas of its
// parameters and body, and invalid ones: a schema broken, a path id too long, no token, no
// Idempotency-Key, a body where none is taken, a body that is not JSON), sent to the real app as
// signed-in customer, staff or admin with ids that exist. Every answer must be one the document
// declares for that operation: its status, its media type, its body (Ajv against the declared
// schema) and, for a problem, a code the document lists for that status. A request the document
// calls valid must not be refused as invalid nor fail with a 5xx; one it calls invalid must be a 4xx.
// Runs are bounded (a few requests per operation and kind), so the whole file takes seconds.
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fc, { type Arbitrary } from 'fast-check';
import type { ValidateFunction } from 'ajv';
import type { FastifyInstance } from 'fastify';
import { forEachEngine, type TestEnv } from './support/app.ts';
import { endpoints } from '../src/client.ts';
import type { Endpoint } from '../src/platform/endpoint.ts';
import {
  deref,
  invalidArbitrary,
  schemaAjv,
  validArbitrary,
  type Known,
  type Schema,
} from './support/schema-arbitrary.ts';

type Json = Record<string, unknown>;
interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header';
  required?: boolean;
  schema: Schema;
}
interface MediaType {
  schema?: Schema;
  examples?: Record<string, unknown>;
}
interface Operation {
  operationId: string;
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content: Record<string, MediaType> };
  responses: Record<string, { content?: Record<string, MediaType> }>;
}

/**
 * Runs per operation and kind of request: enough to cover each operation's shapes, bounded so the
 * file takes seconds. CONTRACT_RUNS=50 searches harder (minutes), for a change to the contract.
 */
const deeper = Number(process.env.CONTRACT_RUNS) || 0;
const validRuns = deeper || 5;
const invalidRuns = deeper || 6;

type Role = 'customer' | 'staff' | 'admin';

/** The signed-in users and the ids that exist, so that valid requests reach the handlers. */
interface Fixtures {
  tokens: Record<Role, string>;
  /** A user the admin operations may change (role, disable) without locking the test out. */
  userId: string;
  productId: string;
  sku: string;
  /** What PATCH, DELETE and a secret rotation change, apart from what the other operations read. */
  changed: { products: string; 'webhook-endpoints': string };
  orderId: string;
  conversationId: string;
  webhookId: string;
  eventId: string;
  apiKeyId: string;
  jobId: string;
}

/** A request as sent, and what the document says about it. */
interface Sent {
  method: string;
  url: string;
  headers: Record<string, string>;
  payload?: string;
  valid: boolean;
  kind: string;
}

interface Answer {
  status: number;
  contentType: string;
  body: string;
}

async function setUp(env: TestEnv): Promise<Fixtures> {
  const { client, adminToken } = env;
  const customer = await env.customer('Contract Customer');
  const staff = await env.customer('Contract Staff');
  await client.ok(endpoints.updateUser, { token: adminToken, params: { id: staff.id }, body: { role: 'staff' } });
  const user = await env.customer('Contract Subject');
  const sku = 'CONTRACT-TEE';
  const product = await env.product([{ sku, stock: 1_000_000 }], 'Contract tee');
  const webhook = await client.ok(endpoints.createWebhookEndpoint, {
    token: adminToken,
    body: { url: 'https://hooks.example.com/contract', events: ['*'] },
  });
  const changedWebhook = await client.ok(endpoints.createWebhookEndpoint, {
    token: adminToken,
    body: { url: 'https://hooks.example.com/changed', events: ['*'] },
  });
  const changedProduct = await env.product([{ sku: 'CONTRACT-CHANGED', stock: 10 }], 'Contract product to change');
  // After the webhook endpoints, which then subscribe to its order.created.
  const order = await client.ok(endpoints.placeOrder, {
    token: customer.token,
    idempotencyKey: randomUUID(),
    body: { lines: [{ sku, quantity: 1 }], payment: { method: 'card', token: 'tok_ok' } },
  });
  const conversation = await client.ok(endpoints.openConversation, {
    token: customer.token,
    body: { subject: 'Contract', body: 'Where is it?', orderId: order.id },
  });
  const apiKey = await client.ok(endpoints.createApiKey, {
    token: adminToken,
    body: { name: 'contract', role: 'staff' },
  });
  const [event] = await env.database.db.query<{ id: string }>(
    `SELECT id FROM events WHERE type = 'order.created' ORDER BY id LIMIT 1`,
  );
  const [job] = await env.database.db.query<{ id: string }>(
    `SELECT id::text FROM pgboss.job ORDER BY created_on LIMIT 1`,
  );
  return {
    tokens: { customer: customer.token, staff: staff.token, admin: adminToken },
    userId: user.id,
    productId: product.id,
    sku,
    changed: { products: changedProduct.id, 'webhook-endpoints': changedWebhook.id },
    orderId: order.id,
    conversationId: conversation.id,
    webhookId: webhook.id,
    eventId: event!.id,
    apiKeyId: apiKey.id,
    jobId: job?.id ?? randomUUID(),
  };
}

/** An id that exists for a path parameter, by the collection it names. */
function existingParam(method: string, path: string, name: string, fx: Fixtures): string | undefined {
  if (name === 'sku') return fx.sku;
  if (name === 'queue') return 'payments.charge';
  if (name === 'eventId') return fx.eventId;
  const collection = path.split('/')[2];
  const changes = method === 'PATCH' || method === 'DELETE' || path.endsWith('/rotate-secret');
  if (changes && collection && collection in fx.changed) return fx.changed[collection as keyof Fixtures['changed']];
  const ids: Record<string, string> = {
    users: fx.userId,
    products: fx.productId,
    orders: fx.orderId,
    conversations: fx.conversationId,
    'webhook-endpoints': fx.webhookId,
    'api-keys': fx.apiKeyId,
  };
  return collection === 'admin' ? fx.jobId : ids[collection!];
}

/** The roles that may call the operation, from its declaration (the document says only that a token is needed). */
function rolesOf(e: Endpoint | undefined): Role[] | 'public' {
  if (!e || e.access === 'public') return 'public';
  return [...e.access];
}

const declarations = new Map<string, Endpoint>(Object.values(endpoints).map((e) => [e.operationId, e as Endpoint]));

/**
 * Operations whose valid requests would end the session they are sent with (logout) or are
 * answered by the caller's password: they are sent with a session made for that one request, so
 * the others keep theirs.
 */
const spendsSession = new Set(['logout', 'logoutEverywhere', 'changePassword']);

/** The checks of one operation, compiled once. */
class OperationContract {
  readonly method: string;
  readonly path: string;
  readonly op: Operation;
  readonly declaration: Endpoint | undefined;
  private readonly validators = new Map<string, ValidateFunction>();
  private readonly bodyAjv = schemaAjv(false);
  private readonly textAjv = schemaAjv(true);
  readonly body: { schema: Schema; validate: ValidateFunction } | undefined;
  readonly query: { schema: Schema; validate: ValidateFunction } | undefined;
  readonly pathParams: Parameter[];

  constructor(method: string, path: string, op: Operation, doc: Json) {
    this.method = method.toUpperCase();
    this.path = path;
    this.op = deref(op, doc) as Operation;
    this.declaration = declarations.get(op.operationId);
    const bodySchema = this.op.requestBody?.content['application/json']?.schema;
    if (bodySchema) this.body = { schema: bodySchema, validate: this.bodyAjv.compile(bodySchema) };
    const queryParams = (this.op.parameters ?? []).filter((p) => p.in === 'query');
    if (queryParams.length > 0) {
      // A cursor is valid only as the nextCursor of a page before, which no schema can say: valid
      // requests leave it out (an invented one is refused, as the document says), invalid ones break its schema.
      const listed = queryParams.filter((p) => p.name !== 'cursor');
      const schema = {
        type: 'object',
        properties: Object.fromEntries(listed.map((p) => [p.name, p.schema])),
        required: listed.filter((p) => p.required).map((p) => p.name),
      };
      this.query = { schema, validate: this.textAjv.compile(schema) };
    }
    this.pathParams = (this.op.parameters ?? []).filter((p) => p.in === 'path');
  }

  get idempotencyKey(): Parameter | undefined {
    return this.op.parameters?.find((p) => p.in === 'header' && p.name === 'Idempotency-Key');
  }

  get streams(): boolean {
    return Object.values(this.op.responses).some((r) => r.content?.['text/event-stream']);
  }

  private urlOf(params: Record<string, string>, query: Record<string, unknown> | undefined): string {
    const path = this.path.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(params[name]!));
    const qs = new URLSearchParams(
      Object.entries(query ?? {}).map(([k, v]): [string, string] => [k, String(v)]),
    ).toString();
    return qs ? `${path}?${qs}` : path;
  }

  private paramsArbitrary(fx: Fixtures, existing: boolean): Arbitrary<Record<string, string>> {
    return fc.record(
      Object.fromEntries(
        this.pathParams.map((p) => {
          const id = existing ? existingParam(this.method, this.path, p.name, fx) : undefined;
          const generated = validArbitrary(p.schema, this.textAjv.compile(p.schema))
            .map(String)
            .filter((v) => v.length > 0);
          return [p.name, id ? fc.constant(id) : generated];
        }),
      ),
    );
  }

  /** Valid requests: every part as the document says, as a role the declaration allows, with ids that exist (mostly) or not. */
  validRequests(fx: Fixtures): Arbitrary<Promise<Sent>> {
    const roles = rolesOf(this.declaration);
    return fc
      .record({
        params: fc
          .boolean()
          .chain((existing) =>
            this.paramsArbitrary(fx, existing || this.pathParams.length === 0 || Math.random() < 0.6),
          ),
        query: this.query
          ? (validArbitrary(this.query.schema, this.query.validate) as Arbitrary<Record<string, unknown>>)
          : fc.constant(undefined),
        body: this.body
          ? validArbitrary(this.body.schema, this.body.validate, this.knownOf(fx))
          : fc.constant(undefined),
        role: roles === 'public' ? fc.constant(undefined) : fc.constantFrom(...roles),
      })
      .map(async ({ params, query, body, role }) => {
        const headers: Record<string, string> = {};
        if (role)
          headers.authorization = `Bearer ${spendsSession.has(this.op.operationId) ? await this.freshSession() : fx.tokens[role]}`;
        if (this.idempotencyKey) headers['idempotency-key'] = randomUUID();
        if (body !== undefined) headers['content-type'] = 'application/json';
        return {
          method: this.method,
          url: this.urlOf(params, query),
          headers,
          payload: body === undefined ? undefined : JSON.stringify(body),
          valid: true,
          kind: 'valid',
        };
      });
  }

  /** Fields of a body that name something that exists; not for creating a product, where a SKU that exists is 409. */
  private knownOf(fx: Fixtures): Known {
    if (this.op.operationId === 'createProduct') return {};
    return { sku: fc.constant(fx.sku), orderId: fc.constant(fx.orderId), token: fc.constant('tok_ok') };
  }

  freshSession: () => Promise<string> = () => Promise.reject(new Error('no session maker'));

  /** Requests the document says are wrong, one fault each. */
  invalidRequests(fx: Fixtures): Arbitrary<Promise<Sent>> | undefined {
    const roles = rolesOf(this.declaration);
    const base = this.validRequests(fx);
    const kinds: Arbitrary<Promise<Sent>>[] = [];
    const alter = (kind: string, change: (sent: Sent) => Sent | Promise<Sent>) =>
      base.map(async (p) => ({ ...(await change(await p)), valid: false, kind }));
    if (this.body) {
      const bad = invalidArbitrary(this.body.schema, this.body.validate);
      if (bad)
        kinds.push(
          fc.tuple(base, bad).map(async ([p, b]) => ({
            ...(await p),
            payload: JSON.stringify(b),
            valid: false,
            kind: 'body breaks its schema',
          })),
        );
      kinds.push(
        alter('body is not JSON', (s) => ({
          ...s,
          payload: '{"unclosed": ',
          headers: { ...s.headers, 'content-type': 'application/json' },
        })),
      );
      kinds.push(
        alter('body is not application/json', (s) => ({
          ...s,
          payload: 'a=1',
          headers: { ...s.headers, 'content-type': 'text/plain' },
        })),
      );
    } else if (this.method !== 'GET') {
      kinds.push(
        alter('a body where none is taken', (s) => ({
          ...s,
          payload: '{"unexpected":true}',
          headers: { ...s.headers, 'content-type': 'application/json' },
        })),
      );
      kinds.push(
        alter('a body that is not application/json where none is taken', (s) => ({
          ...s,
          payload: 'a=1',
          headers: { ...s.headers, 'content-type': 'text/plain' },
        })),
      );
    }
    if (this.query) {
      for (const p of (this.op.parameters ?? []).filter((x) => x.in === 'query')) {
        const bad = invalidArbitrary(p.schema, this.textAjv.compile(p.schema));
        if (!bad) continue;
        // Sent as text, so a wrong value must still be wrong once coerced from text.
        const asText = bad.filter((v) => typeof v !== 'object' && !this.textAjv.validate(p.schema, String(v)));
        kinds.push(
          fc.tuple(base, asText).map(async ([p2, v]) => {
            const sent = await p2;
            const url = new URL(sent.url, 'http://x');
            url.searchParams.set(p.name, String(v));
            return { ...sent, url: url.pathname + url.search, valid: false, kind: `query ${p.name} breaks its schema` };
          }),
        );
      }
    }
    if (this.pathParams.length > 0) {
      kinds.push(
        alter('a path id over 100 characters', (s) => ({
          ...s,
          url: this.urlOf(Object.fromEntries(this.pathParams.map((p) => [p.name, 'x'.repeat(101)])), undefined),
        })),
      );
    }
    if (roles !== 'public') {
      kinds.push(
        alter('no token', (s) => {
          const { authorization: _gone, ...headers } = s.headers;
          return { ...s, headers };
        }),
      );
      const refused = (['customer', 'staff'] as const).find((r) => !roles.includes(r));
      if (refused)
        kinds.push(
          alter(`signed in as ${refused}`, (s) => ({
            ...s,
            headers: { ...s.headers, authorization: `Bearer ${fx.tokens[refused]}` },
          })),
        );
    }
    const key = this.idempotencyKey;
    if (key?.required)
      kinds.push(
        alter('no Idempotency-Key', (s) => {
          const { 'idempotency-key': _gone, ...headers } = s.headers;
          return { ...s, headers };
        }),
      );
    if (key)
      kinds.push(
        alter('an Idempotency-Key over 255 characters', (s) => ({
          ...s,
          headers: { ...s.headers, 'idempotency-key': 'k'.repeat(256) },
        })),
      );
    return kinds.length > 0 ? fc.oneof(...kinds) : undefined;
  }

  private validatorOf(status: string, media: string, schema: Schema): ValidateFunction {
    const key = `${status} ${media}`;
    let v = this.validators.get(key);
    if (!v) {
      v = this.bodyAjv.compile(schema);
      this.validators.set(key, v);
    }
    return v;
  }

  /** Why the answer is not what the document declares for this request, or null. */
  check(sent: Sent, answer: Answer): string | null {
    const declared = this.op.responses[String(answer.status)];
    if (!declared)
      return `status ${answer.status} is not declared (declared: ${Object.keys(this.op.responses).join(', ')})`;
    const media = answer.contentType.split(';')[0]!.trim();
    const content = declared.content;
    if (!content)
      return answer.body === '' ? null : `status ${answer.status} declares no body, but one came (${media})`;
    const type = content[media];
    if (!type)
      return `status ${answer.status} is declared as ${Object.keys(content).join(', ')}, answered as ${media || 'no media type'}`;
    if (media === 'text/event-stream')
      return /^(?:(?:retry|id|event|data): ?.*|:.*)\n/.test(answer.body)
        ? null
        : `not an event stream: ${answer.body.slice(0, 80)}`;
    let body: unknown;
    try {
      body = JSON.parse(answer.body);
    } catch {
      return `the body is not JSON: ${answer.body.slice(0, 80)}`;
    }
    if (type.schema) {
      const validate = this.validatorOf(String(answer.status), media, type.schema);
      if (!validate(body))
        return `the body does not match the declared schema: ${JSON.stringify(validate.errors?.slice(0, 3))}`;
    }
    if (media === 'application/problem+json') {
      const problem = body as { status: number; code: string };
      if (problem.status !== answer.status)
        return `the problem says status ${problem.status}, the answer is ${answer.status}`;
      const codes = Object.keys(type.examples ?? {});
      if (!codes.includes(problem.code))
        return `code ${problem.code} is not among the codes declared for ${answer.status}: ${codes.join(', ')}`;
      if (sent.valid && (problem.code === 'validation_failed' || problem.code === 'bad_request'))
        return `a request the document calls valid was refused as ${problem.code}`;
    }
    if (answer.status >= 500) return `a ${answer.status}: a fault, whatever the request`;
    if (!sent.valid && answer.status < 400)
      return `a request the document calls invalid (${sent.kind}) was answered ${answer.status}`;
    return null;
  }
}

async function send(
  app: FastifyInstance,
  streamBase: () => Promise<string>,
  contract: OperationContract,
  sent: Sent,
): Promise<Answer> {
  if (contract.streams) {
    // A stream does not end: read its first frame over a socket on loopback, then hang up.
    const controller = new AbortController();
    const res = await fetch(`${await streamBase()}${sent.url}`, {
      method: sent.method,
      headers: sent.headers,
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    let body = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      body += Buffer.from(value).toString('utf8');
      if (res.headers.get('content-type')?.startsWith('text/event-stream') && body.includes('\n\n')) {
        controller.abort();
        break;
      }
    }
    return { status: res.status, contentType: res.headers.get('content-type') ?? '', body };
  }
  const res = await app.inject({
    method: sent.method as 'GET',
    url: sent.url,
    headers: sent.headers,
    ...(sent.payload === undefined ? {} : { payload: sent.payload }),
  });
  return { status: res.statusCode, contentType: String(res.headers['content-type'] ?? ''), body: res.body };
}

forEachEngine('every operation answers as the OpenAPI document declares', 'one', (env) => {
  let fx: Fixtures;
  let contracts: OperationContract[];
  let listening: Promise<string> | undefined;
  const streamBase = () => (listening ??= env().app.listen({ host: '127.0.0.1', port: 0 }));

  before(async () => {
    fx = await setUp(env());
    const doc = env().app.swagger() as unknown as Json & { paths: Record<string, Record<string, Operation>> };
    // Deletions last: the webhook endpoint they delete is the one the deliveries' operations read.
    contracts = Object.entries(doc.paths)
      .flatMap(([path, methods]) =>
        Object.entries(methods).map(([method, op]) => new OperationContract(method, path, op, doc)),
      )
      .sort((a, b) => Number(a.method === 'DELETE') - Number(b.method === 'DELETE'));
    const sessions = await env().customers(200);
    for (const c of contracts) c.freshSession = async () => sessions.pop()?.token ?? (await env().customer()).token;
  });

  const answered = new Map<string, number>();
  after(() => {
    if (process.env.CONTRACT_REPORT)
      console.log(
        [...answered]
          .sort()
          .map(([k, n]) => `${k} x${n}`)
          .join('\n'),
      );
  });

  const run = async (which: 'valid' | 'invalid') => {
    const failures: string[] = [];
    for (const contract of contracts) {
      const requests = which === 'valid' ? contract.validRequests(fx) : contract.invalidRequests(fx);
      if (!requests) continue;
      await fc
        .assert(
          fc.asyncProperty(requests, async (pending) => {
            const sent = await pending;
            const answer = await send(env().app, streamBase, contract, sent);
            const wrong = contract.check(sent, answer);
            const seen = `${contract.op.operationId} ${which} ${answer.status}`;
            answered.set(seen, (answered.get(seen) ?? 0) + 1);
            if (wrong)
              failures.push(
                `${contract.method} ${contract.path} (${contract.op.operationId}), ${sent.kind}: ${wrong}\n    sent ${sent.method} ${sent.url} ${sent.payload ?? ''}\n    answered ${answer.status} ${answer.contentType} ${answer.body.slice(0, 300)}`,
              );
            return wrong === null;
          }),
          { numRuns: which === 'valid' ? validRuns : invalidRuns, endOnFailure: true },
        )
        .catch(() => {
          /* collected above, with the request */
        });
    }
    assert.deepEqual(failures, [], `answers the document does not declare:\n${failures.join('\n')}`);
  };

  it('requests the document calls valid get a declared 2xx or a declared refusal, never validation_failed nor a 5xx', async () => {
    await run('valid');
  });

  it('requests the document calls invalid (a schema broken, a path id over 100 characters, no token, no Idempotency-Key, a body not JSON) get a declared 4xx', async () => {
    await run('invalid');
  });
});
