// A typed client for the Engine Room API, derived from the same endpoint declarations the server
// registers (src/modules/*/schemas.ts): a request's params, query and body and each status's body are
// typed from the schemas, so a change to an endpoint breaks its callers at compile time.
//
//   const api = createClient(fetchTransport('http://127.0.0.1:3000'));
//   const { token } = await api.ok(endpoints.login, { body: { email, password } });
//   const me = await api.ok(endpoints.me, { token });
import type { Static, TSchema } from 'typebox';
import type { Endpoint } from './platform/endpoint.ts';
import type { Problem } from './errors.ts';
import * as accounts from './modules/accounts/schemas.ts';
import * as catalog from './modules/catalog/schemas.ts';
import * as orders from './modules/orders/schemas.ts';
import * as payments from './modules/payments/schemas.ts';
import * as sandbox from './modules/payments/providers/schemas.ts';
import * as ledger from './modules/ledger/schemas.ts';
import * as operations from './modules/operations/schemas.ts';
import * as webhooks from './modules/webhooks/schemas.ts';
import * as messaging from './modules/messaging/schemas.ts';

export const endpoints = {
  signup: accounts.signup,
  login: accounts.login,
  logout: accounts.logout,
  me: accounts.me,
  session: accounts.session,
  createApiKey: accounts.createApiKey,
  listApiKeys: accounts.listApiKeys,
  revokeApiKey: accounts.revokeApiKey,
  updateUser: accounts.updateUser,
  createProduct: catalog.createProduct,
  listProducts: catalog.listProducts,
  getProduct: catalog.getProduct,
  updateProduct: catalog.updateProduct,
  getStock: catalog.getStock,
  adjustStock: catalog.adjustStock,
  listStockMovements: catalog.listStockMovements,
  placeOrder: orders.placeOrder,
  listOrders: orders.listOrders,
  getOrder: orders.getOrder,
  cancelOrder: orders.cancelOrder,
  fulfilOrder: orders.fulfilOrder,
  listOrderPayments: payments.listOrderPayments,
  listSandboxCharges: sandbox.listSandboxCharges,
  getSandboxOutage: sandbox.getSandboxOutage,
  startSandboxOutage: sandbox.startSandboxOutage,
  endSandboxOutage: sandbox.endSandboxOutage,
  ledgerBalances: ledger.ledgerBalances,
  audit: ledger.audit,
  listFailedJobs: operations.listFailedJobs,
  retryFailedJob: operations.retryFailedJob,
  retryAllFailedJobs: operations.retryAllFailedJobs,
  getJob: operations.getJob,
  operationsOverview: operations.operationsOverview,
  runAudit: operations.runAudit,
  lastAuditRun: operations.lastAuditRun,
  createWebhookEndpoint: webhooks.createWebhookEndpoint,
  listWebhookEndpoints: webhooks.listWebhookEndpoints,
  getWebhookEndpoint: webhooks.getWebhookEndpoint,
  updateWebhookEndpoint: webhooks.updateWebhookEndpoint,
  deleteWebhookEndpoint: webhooks.deleteWebhookEndpoint,
  listDeliveryAttempts: webhooks.listDeliveryAttempts,
  redeliverEvent: webhooks.redeliverEvent,
  rotateWebhookSecret: webhooks.rotateWebhookSecret,
  openConversation: messaging.openConversation,
  listConversations: messaging.listConversations,
  getConversation: messaging.getConversation,
  listMessages: messaging.listMessages,
  postMessage: messaging.postMessage,
  markConversationRead: messaging.markRead,
  eventStream: messaging.eventStream,
  listMailbox: messaging.listMailbox,
} as const;

export interface RawRequest { method: string; url: string; headers: Record<string, string>; body?: string }
export interface RawResponse { status: number; headers: Record<string, string>; body: string }
export type Transport = (request: RawRequest) => Promise<RawResponse>;

type Part<S, Key extends string, Optional extends boolean = false> = S extends TSchema
  ? (Optional extends true ? { [K in Key]?: Partial<Static<S>> } : { [K in Key]: Static<S> })
  : { [K in Key]?: never };

export type Input<E extends Endpoint> = Part<E['params'], 'params'> & Part<E['body'], 'body'> & Part<E['querystring'], 'query', true> & {
  /** A session token or API key, sent as Authorization: Bearer. */
  token?: string;
  idempotencyKey?: string;
  headers?: Record<string, string>;
};

type Success<E extends Endpoint> = {
  [S in keyof E['response'] & number]: { status: S; ok: true; body: E['response'][S] extends TSchema ? Static<E['response'][S]> : never; headers: Record<string, string> };
}[keyof E['response'] & number];

export type Result<E extends Endpoint> = Success<E> | { status: number; ok: false; body: Problem; headers: Record<string, string> };

export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem;
  constructor(status: number, problem: Problem) {
    super(`${status} ${problem.code}: ${problem.detail ?? problem.title}`);
    this.status = status;
    this.problem = problem;
  }
}

function pathOf(url: string, params: Record<string, unknown> | undefined): string {
  return url.replace(/:(\w+)/g, (_, name: string) => encodeURIComponent(String(params?.[name] ?? '')));
}

export function createClient(transport: Transport) {
  async function call<const E extends Endpoint>(e: E, input: Input<E>): Promise<Result<E>> {
    const { params, body, query, token, idempotencyKey, headers } = input as { params?: Record<string, unknown>; body?: unknown; query?: Record<string, unknown>; token?: string; idempotencyKey?: string; headers?: Record<string, string> };
    let url = pathOf(e.url, params);
    const search = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) search.set(k, String(v));
    if ([...search].length > 0) url += `?${search}`;
    const sent: Record<string, string> = { accept: 'application/json', ...headers };
    if (token) sent.authorization = `Bearer ${token}`;
    if (idempotencyKey) sent['idempotency-key'] = idempotencyKey;
    if (body !== undefined) sent['content-type'] = 'application/json';
    const res = await transport({ method: e.method, url, headers: sent, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    const parsed = res.body.length > 0 && /json/.test(res.headers['content-type'] ?? '') ? JSON.parse(res.body) : null;
    return { status: res.status, ok: res.status < 400, body: parsed, headers: res.headers } as Result<E>;
  }

  /** Calls and answers the body of a success; throws ApiError with the problem otherwise. */
  async function ok<const E extends Endpoint>(e: E, input: Input<E>): Promise<Success<E>['body']> {
    const result = await call(e, input);
    if (!result.ok) throw new ApiError(result.status, result.body as Problem);
    return result.body as Success<E>['body'];
  }

  return { call, ok };
}

export type Client = ReturnType<typeof createClient>;

/** Sends requests over HTTP with fetch (Node 20+ and browsers). */
export function fetchTransport(baseUrl: string): Transport {
  return async (request) => {
    const res = await fetch(baseUrl.replace(/\/$/, '') + request.url, { method: request.method, headers: request.headers, body: request.body ?? null });
    const headers: Record<string, string> = {};
    res.headers.forEach((value, key) => { headers[key] = value; });
    return { status: res.status, headers, body: await res.text() };
  };
}
