// The HTTP platform: request ids, problem+json for every error, 404/405, security headers, CORS,
// and the validator set-up. It knows nothing of the domains.
import { randomUUID } from 'node:crypto';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import helmet from '@fastify/helmet';
import cors from '@fastify/cors';
import { AppError, problem, type ErrorCode, type FieldError, type Problem } from '../errors.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    returnsSecret?: boolean;
  }
}

const requestIdPattern = /^[A-Za-z0-9._:-]{1,128}$/;

/** A valid incoming X-Request-Id is kept (so a trace crosses services); anything else is replaced. */
export function requestIdFor(request: { headers: Record<string, string | string[] | undefined> }): string {
  const incoming = request.headers['x-request-id'];
  return typeof incoming === 'string' && requestIdPattern.test(incoming) ? incoming : randomUUID();
}

// ajv-formats is CommonJS with a default export; under NodeNext it arrives wrapped.
const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ??
  addFormatsModule) as unknown as (ajv: Ajv) => void;

function makeAjv(coerce: boolean): Ajv {
  const ajv = new Ajv({
    allErrors: true,
    coerceTypes: coerce ? 'array' : false,
    useDefaults: true,
    removeAdditional: false,
    strict: false,
  });
  addFormats(ajv);
  return ajv;
}

export function sendProblem(reply: FastifyReply, body: Problem, headers: Record<string, string> = {}): FastifyReply {
  // An error handled after the answer went out (Fastify would refuse this send) must not change
  // the status that the reply, its log line and the metrics report: the client has its answer.
  if (reply.sent || reply.raw.headersSent) {
    reply.log.warn(
      { status: body.status, code: body.code },
      'an error came after the answer was sent; the client got the answer',
    );
    return reply;
  }
  return reply.code(body.status).headers(headers).type('application/problem+json').send(JSON.stringify(body));
}

interface ValidationIssue {
  instancePath: string;
  message?: string;
  keyword: string;
  params: Record<string, unknown>;
}

function fieldErrors(issues: ValidationIssue[], context: string | undefined): FieldError[] {
  const prefix = context && context !== 'body' ? `/${context === 'querystring' ? 'query' : context}` : '';
  return issues.map((issue) => {
    let path = prefix + issue.instancePath;
    if (issue.keyword === 'required') path += `/${String(issue.params.missingProperty)}`;
    if (issue.keyword === 'additionalProperties') {
      return { path: `${path}/${String(issue.params.additionalProperty)}`, message: 'is not a known field' };
    }
    return { path: path || '/', message: issue.message ?? 'is invalid' };
  });
}

/** The longest path segment the router matches a path parameter to (find-my-way's maxParamLength, Fastify's default). */
export const maxPathSegmentLength = 100;

const notJson = 'The body is not valid JSON';
const fastifyCodes: Record<string, [ErrorCode, string?]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: ['payload_too_large'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: ['unsupported_media_type'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: ['bad_request', notJson],
  FST_ERR_CTP_EMPTY_JSON_BODY: ['bad_request', notJson],
  FST_ERR_CTP_INVALID_JSON_BODY: ['bad_request', notJson],
  // Raised by the router itself, before any route or hook (see frameworkError below).
  FST_ERR_MAX_PARAM_LENGTH: [
    'uri_too_long',
    `A path segment is longer than ${maxPathSegmentLength} characters: no id is that long`,
  ],
  FST_ERR_BAD_URL: ['bad_request', 'The path is not valid percent-encoded UTF-8'],
};

export function toProblem(
  err: FastifyError | AppError | Error,
  log: FastifyRequest['log'],
): { body: Problem; headers: Record<string, string> } {
  if (err instanceof AppError) {
    const headers = { ...err.extra.headers };
    if (err.extra.retryAfterSeconds !== undefined)
      headers['retry-after'] = String(Math.max(1, Math.ceil(err.extra.retryAfterSeconds)));
    return { body: problem(err.code, err.message, err.extra.errors), headers };
  }
  const fe = err as FastifyError & { validation?: ValidationIssue[]; validationContext?: string };
  if (fe.validation) {
    return {
      body: problem(
        'validation_failed',
        'The request does not match the schema',
        fieldErrors(fe.validation, fe.validationContext),
      ),
      headers: {},
    };
  }
  const mapped = fe.code ? fastifyCodes[fe.code] : undefined;
  if (mapped) return { body: problem(mapped[0], mapped[1]), headers: {} };
  if (err instanceof SyntaxError && fe.statusCode === 400)
    return { body: problem('bad_request', notJson), headers: {} };
  if (fe.statusCode === 404) return { body: problem('not_found'), headers: {} };
  if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500)
    return { body: problem('bad_request', 'The request is malformed'), headers: {} };
  if (unstorableText(err)) {
    // A NUL character (text cannot hold it, jsonb refuses \u0000) in a field no schema pattern
    // excluded: bad input, not our fault.
    return {
      body: problem('validation_failed', 'The request contains a NUL character (\\u0000), which cannot be stored'),
      headers: {},
    };
  }
  if ((err as { code?: string })?.code === '22003') {
    // numeric_value_out_of_range: a number the schemas let through but a column cannot hold (the
    // schemas bound what each request may add; a rare sum of many can still reach the edge).
    log.warn({ err }, 'numeric value out of range');
    return { body: problem('limit_exceeded', 'A quantity or amount would be beyond what can be stored'), headers: {} };
  }
  if (databaseUnavailable(err)) {
    // The database went away (restart, failover): a fault of ours, but a passing one; say so.
    log.warn({ err }, 'database unavailable');
    return {
      body: problem('unavailable', 'The database is not reachable right now; retry shortly'),
      headers: { 'retry-after': '1' },
    };
  }
  // A fault of ours: the client learns only that; the log gets the whole error with its stack.
  log.error({ err }, 'unhandled error');
  return {
    body: problem('internal', 'Something went wrong on our side; the request id identifies it in our logs'),
    headers: {},
  };
}

// 22021: invalid byte sequence (a NUL in text); 22P05: untranslatable character (\u0000 in jsonb).
function unstorableText(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return code === '22021' || code === '22P05';
}

// Connection-level failures: the server shutting down or restarting (57P01-57P03), a connection
// that broke or could not be made (08xxx), and the socket errors behind them.
const unavailableCodes = new Set([
  '57P01',
  '57P02',
  '57P03',
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
]);

// pg's own words (its errors carry no code for these): a connection that broke while in use or
// before it was used again, and a pool whose connections were all busy for longer than its
// connectionTimeoutMillis (a burst larger than the pool: the request may be retried shortly).
const unavailableMessages =
  /^Connection terminated|has encountered a connection error and is not queryable|^timeout exceeded when trying to connect$/;

export function databaseUnavailable(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return unavailableCodes.has(e?.code ?? '') || unavailableMessages.test(e?.message ?? '');
}

/** Whether a request has a body still to arrive (content-length above 0, or chunked). */
export function carriesBody(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

// A route that declares no body takes none, as a route with a schema refuses unknown fields: the
// body would be unvalidated input that reaches code (the idempotency request hash) of unbounded
// depth. An empty object is allowed, for clients that always send one.
async function refuseBody(request: FastifyRequest): Promise<void> {
  const body = request.body;
  if (body === undefined || body === null) return;
  if (typeof body === 'object' && !Array.isArray(body) && Object.keys(body).length === 0) return;
  throw new AppError('validation_failed', 'This endpoint takes no body', {
    errors: [{ path: '/', message: 'must be empty: this endpoint takes no body' }],
  });
}

// A body whose fields are all optional may be left out, as if it were {} (the OpenAPI document says
// so: openapi.ts), so that an endpoint can gain options without breaking clients that send none.
function takesNoBodyAsEmpty(schema: unknown): boolean {
  const s = schema as { type?: unknown; required?: unknown } | undefined;
  return s?.type === 'object' && (!Array.isArray(s.required) || s.required.length === 0);
}

async function noBodyAsEmpty(request: FastifyRequest): Promise<void> {
  if (request.body === undefined || request.body === null) request.body = {};
}

// A response with a secret in it must not stay in a browser's or a proxy's cache. Set per route,
// from the endpoint declaration, so other routes pay nothing for it.
// A callback hook, not an async one: an async onSend defers the send by a tick, so a handler that
// sent without returning the reply was answered twice (a logged "Reply was already sent").
function noStore(
  _request: FastifyRequest,
  reply: FastifyReply,
  payload: unknown,
  done: (err: null, payload: unknown) => void,
): void {
  reply.header('cache-control', 'no-store');
  done(null, payload);
}

function hooksOf<T>(hooks: T | T[] | undefined): T[] {
  return hooks === undefined ? [] : Array.isArray(hooks) ? hooks : [hooks];
}

/** Route patterns to a RegExp, for telling 405 from 404. */
function patternOf(url: string): RegExp {
  const escaped = url
    .split('/')
    .map((part) => (part.startsWith(':') ? '[^/]+' : part === '*' ? '.*' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${escaped}/?$`);
}

/**
 * Fastify's frameworkErrors: what the router refuses before any route matched (a path segment over
 * maxPathSegmentLength, a path that is not valid percent-encoding) would otherwise be answered with
 * Fastify's own plain JSON. No hook has run for it, so the request id is set here.
 */
export function frameworkError(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const { body, headers } = toProblem(err, request.log);
  void sendProblem(reply, body, { ...headers, 'x-request-id': request.id }); // the reply is not awaited: Fastify sends it
}

export interface HttpPlatformOptions {
  corsOrigins: string[];
}

export async function registerHttpPlatform(app: FastifyInstance, options: HttpPlatformOptions): Promise<void> {
  // Bodies are validated exactly as sent; only query strings, params and headers are coerced from text.
  const bodyAjv = makeAjv(false);
  const textAjv = makeAjv(true);
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? bodyAjv : textAjv).compile(schema));

  // The API speaks JSON only: anything else is 415, not a string handed to a JSON schema.
  app.removeContentTypeParser('text/plain');

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  // The time the server spent on the answer, body serialized (W3C Server-Timing): what
  // bench/lists.ts measures, and what a browser's developer tools show next to the network time.
  // A callback hook, not an async one: an async onSend defers the send by a tick, and a response
  // traced through its raw stream then has its headers written twice (test/tracing.test.ts).
  app.addHook('onSend', (_request, reply, payload, done) => {
    reply.header('server-timing', `app;dur=${reply.elapsedTime.toFixed(1)}`);
    done(null, payload);
  });

  await app.register(helmet, {
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        frameAncestors: ["'none'"],
        // Served over plain http in development; upgrading /docs' assets to https would break it.
        upgradeInsecureRequests: null,
      },
    },
  });
  if (options.corsOrigins.length > 0) {
    await app.register(cors, {
      origin: options.corsOrigins.includes('*') ? true : options.corsOrigins,
      exposedHeaders: ['x-request-id', 'idempotent-replayed', 'retry-after'],
      credentials: !options.corsOrigins.includes('*'),
    });
  }

  const routes: { method: string; pattern: RegExp }[] = [];
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) routes.push({ method, pattern: patternOf(route.url) });
    if (!route.schema?.body && methods.some((m) => m !== 'GET' && m !== 'HEAD'))
      route.preValidation = [...hooksOf(route.preValidation), refuseBody];
    else if (takesNoBodyAsEmpty(route.schema?.body))
      route.preValidation = [...hooksOf(route.preValidation), noBodyAsEmpty];
    if (route.config?.returnsSecret) route.onSend = [...hooksOf(route.onSend), noStore];
  });

  // No route for this method and path: 405 with Allow when the path has other methods, else 404.
  function noRoute(request: FastifyRequest, reply: FastifyReply): FastifyReply {
    const path = request.url.split('?')[0] ?? '';
    const allowed = [...new Set(routes.filter((r) => r.pattern.test(path)).map((r) => r.method))];
    if (allowed.length > 0) {
      return sendProblem(
        reply,
        problem('method_not_allowed', `${request.method} is not allowed here; use ${allowed.join(', ')}`),
        { allow: allowed.join(', ') },
      );
    }
    return sendProblem(reply, problem('not_found', `No route for ${request.method} ${path}`));
  }
  app.setNotFoundHandler(noRoute);
  // No route wants this body: answer before it arrives, and close the connection rather than wait
  // for the rest of it (a client trickling a body to an unknown path holds nothing).
  app.addHook('onRequest', async (request, reply) => {
    if (!request.is404 || !carriesBody(request)) return;
    reply.header('connection', 'close');
    return noRoute(request, reply);
  });

  app.setErrorHandler((err: FastifyError, request, reply) => {
    // The not-found route still parses a body for methods that may carry one (QUERY, PROPFIND...):
    // one sent without a Content-Type, or with a broken one, must not turn "no such route" into 400.
    // (A refusal of ours, a rate limit say, and any fault still answer as themselves.)
    if (request.is404 && !(err instanceof AppError) && (err.statusCode ?? 500) < 500) return noRoute(request, reply);
    const { body, headers } = toProblem(err, request.log);
    return sendProblem(reply, body, headers);
  });
}
