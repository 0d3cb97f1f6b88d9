// The server's own typed client, derived from the endpoint declarations it registers
// (src/modules/*/schemas.ts): a request's params, query and body and each status's body are typed
// from the schemas, so a change to an endpoint breaks its callers at compile time. The requests are
// built and sent by the runtime of the published client (packages/client/src/core.ts); applications
// use that package (@engine-room/client), which is typed from the OpenAPI document instead.
//
//   const api = createClient(fetchTransport('http://127.0.0.1:3000'));
//   const { token } = await api.ok(endpoints.login, { body: { email, password } });
//   const me = await api.ok(endpoints.me, { token });
import type { Static, TSchema } from 'typebox';
import type { FastifyInstance } from 'fastify';
import type { Endpoint } from './platform/endpoint.ts';
import type { Problem } from './errors.ts';
import { createCore, type Call, type Transport } from '../packages/client/src/core.ts';
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
  changePassword: accounts.changePassword,
  logoutEverywhere: accounts.logoutEverywhere,
  requestPasswordReset: accounts.requestPasswordReset,
  resetPassword: accounts.resetPassword,
  verifyEmail: accounts.verifyEmail,
  resendVerification: accounts.resendVerification,
  listUsers: accounts.listUsers,
  getUser: accounts.getUser,
  listUserSessions: accounts.listUserSessions,
  disableUser: accounts.disableUser,
  enableUser: accounts.enableUser,
  updateUser: accounts.updateUser,
  createProduct: catalog.createProduct,
  listProducts: catalog.listProducts,
  getProduct: catalog.getProduct,
  updateProduct: catalog.updateProduct,
  getStock: catalog.getStock,
  adjustStock: catalog.adjustStock,
  listStockMovements: catalog.listStockMovements,
  listStock: catalog.listStock,
  placeOrder: orders.placeOrder,
  listOrders: orders.listOrders,
  getOrder: orders.getOrder,
  cancelOrder: orders.cancelOrder,
  fulfilOrder: orders.fulfilOrder,
  listOrderPayments: payments.listOrderPayments,
  listOrderHistory: orders.listOrderHistory,
  listOrderLedgerEntries: orders.listOrderLedgerEntries,
  listOrderStockMovements: orders.listOrderStockMovements,
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
  listQueueJobs: operations.listQueueJobs,
  operationsOverview: operations.operationsOverview,
  runAudit: operations.runAudit,
  lastAuditRun: operations.lastAuditRun,
  createWebhookEndpoint: webhooks.createWebhookEndpoint,
  listWebhookEndpoints: webhooks.listWebhookEndpoints,
  getWebhookEndpoint: webhooks.getWebhookEndpoint,
  updateWebhookEndpoint: webhooks.updateWebhookEndpoint,
  deleteWebhookEndpoint: webhooks.deleteWebhookEndpoint,
  listDeliveryAttempts: webhooks.listDeliveryAttempts,
  getWebhookDelivery: webhooks.getWebhookDelivery,
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

export type { Transport } from '../packages/client/src/core.ts';
export { ApiError, fetchTransport } from '../packages/client/src/core.ts';

type Part<S, Key extends string, Optional extends boolean = false> = S extends TSchema
  ? Optional extends true
    ? { [K in Key]?: Partial<Static<S>> }
    : { [K in Key]: Static<S> }
  : { [K in Key]?: never };

/** A body whose fields are all optional may be left out, as the server allows. */
type BodyOptional<S> = S extends TSchema ? (Partial<Static<S>> extends Static<S> ? true : false) : false;

export type Input<E extends Endpoint> = Part<E['params'], 'params'> &
  Part<E['body'], 'body', BodyOptional<E['body']>> &
  Part<E['querystring'], 'query', true> & {
    /** A session token or API key, sent as Authorization: Bearer. */
    token?: string;
    idempotencyKey?: string;
    headers?: Record<string, string>;
  };

type Success<E extends Endpoint> = {
  [S in keyof E['response'] & number]: {
    status: S;
    ok: true;
    body: E['response'][S] extends TSchema ? Static<E['response'][S]> : never;
    headers: Record<string, string>;
  };
}[keyof E['response'] & number];

export type Result<E extends Endpoint> =
  Success<E> | { status: number; ok: false; body: Problem; headers: Record<string, string> };

/**
 * The client over a transport (fetch, or Fastify's inject in the tests): exactly the requests the
 * caller describes. Unlike the package's createClient, it sends an Idempotency-Key only when given
 * one and never retries, so that tests see each answer as the server gave it.
 */
export function createClient(transport: Transport) {
  const core = createCore({ transport, retry: false, idempotencyKeys: false });
  const callOf = (e: Endpoint, input: Input<Endpoint>): Call => {
    const { params, body, query, token, idempotencyKey, headers } = input as {
      params?: Record<string, unknown>;
      body?: unknown;
      query?: Record<string, unknown>;
      token?: string;
      idempotencyKey?: string;
      headers?: Record<string, string>;
    };
    return {
      method: e.method,
      path: e.url,
      ...(params ? { params } : {}),
      ...(query ? { query } : {}),
      ...(body !== undefined ? { body } : {}),
      ...(token ? { token } : {}),
      ...(idempotencyKey ? { key: idempotencyKey } : {}),
      ...(headers ? { headers } : {}),
    };
  };

  async function call<const E extends Endpoint>(e: E, input: Input<E>): Promise<Result<E>> {
    return (await core.send(callOf(e, input as Input<Endpoint>))) as Result<E>;
  }

  /** Calls and answers the body of a success; throws ApiError with the problem otherwise. */
  async function ok<const E extends Endpoint>(e: E, input: Input<E>): Promise<Success<E>['body']> {
    return (await core.ok(callOf(e, input as Input<Endpoint>))) as Success<E>['body'];
  }

  return { call, ok };
}

export type Client = ReturnType<typeof createClient>;

/** Sends requests into an app in this process (Fastify's inject): the tests, and `engine-room seed`. */
export function injectTransport(app: FastifyInstance): Transport {
  return async (request) => {
    const res = await app.inject({
      method: request.method as 'GET',
      url: request.url,
      headers: request.headers,
      ...(request.body !== undefined ? { payload: request.body } : {}),
    });
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers))
      if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : String(v);
    return { status: res.statusCode, headers, body: res.body };
  };
}
