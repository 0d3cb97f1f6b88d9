// The console's one door to Engine Room: every request the pages make goes through call() with a
// route from `routes` below. Types come from the server's own endpoint declarations
// (src/modules/*/schemas.ts) through the typed client's Input/Result (src/client.ts), imported as
// types only, so esbuild erases them and no server code reaches the bundle. Each route restates
// its method and path, and the compiler checks both against the declaration. When the client
// package lands, this file is the seam to move onto it.
//
// Authentication is the session cookie (HttpOnly, set by login), plus X-CSRF-Token on unsafe
// requests: login answers the CSRF token, and GET /v1/auth/session answers it again after a reload.
import type { Endpoint } from '../../src/platform/endpoint.ts';
import type { Input, Result } from '../../src/client.ts';
import type { Problem } from '../../src/errors.ts';
import type * as accounts from '../../src/modules/accounts/schemas.ts';
import type * as operations from '../../src/modules/operations/schemas.ts';
import type * as ledger from '../../src/modules/ledger/schemas.ts';
import type * as sandbox from '../../src/modules/payments/providers/schemas.ts';
import type * as messaging from '../../src/modules/messaging/schemas.ts';
import type * as webhooks from '../../src/modules/webhooks/schemas.ts';
import type * as orders from '../../src/modules/orders/schemas.ts';
import type * as payments from '../../src/modules/payments/schemas.ts';
import type * as catalog from '../../src/modules/catalog/schemas.ts';

export interface Route<E extends Endpoint> { method: E['method']; url: E['url']; readonly endpoint?: E }

function route<E extends Endpoint>(method: E['method'], url: E['url']): Route<E> {
  return { method, url };
}

export const routes = {
  login: route<typeof accounts.login>('POST', '/v1/auth/login'),
  logout: route<typeof accounts.logout>('POST', '/v1/auth/logout'),
  session: route<typeof accounts.session>('GET', '/v1/auth/session'),
  overview: route<typeof operations.operationsOverview>('GET', '/v1/admin/operations'),
  failedJobs: route<typeof operations.listFailedJobs>('GET', '/v1/admin/jobs'),
  job: route<typeof operations.getJob>('GET', '/v1/admin/jobs/:id'),
  retryJob: route<typeof operations.retryFailedJob>('POST', '/v1/admin/jobs/:id/retry'),
  retryQueue: route<typeof operations.retryAllFailedJobs>('POST', '/v1/admin/jobs/retry'),
  runAudit: route<typeof operations.runAudit>('POST', '/v1/admin/audit-runs'),
  lastAudit: route<typeof operations.lastAuditRun>('GET', '/v1/admin/audit-runs/latest'),
  ledgerBalances: route<typeof ledger.ledgerBalances>('GET', '/v1/ledger/balances'),
  sandboxOutage: route<typeof sandbox.getSandboxOutage>('GET', '/v1/sandbox/outage'),
  queueJobs: route<typeof operations.listQueueJobs>('GET', '/v1/admin/queues/:queue/jobs'),
  conversations: route<typeof messaging.listConversations>('GET', '/v1/conversations'),
  conversation: route<typeof messaging.getConversation>('GET', '/v1/conversations/:id'),
  messages: route<typeof messaging.listMessages>('GET', '/v1/conversations/:id/messages'),
  postMessage: route<typeof messaging.postMessage>('POST', '/v1/conversations/:id/messages'),
  markRead: route<typeof messaging.markRead>('POST', '/v1/conversations/:id/read'),
  webhookEndpoints: route<typeof webhooks.listWebhookEndpoints>('GET', '/v1/webhook-endpoints'),
  createWebhookEndpoint: route<typeof webhooks.createWebhookEndpoint>('POST', '/v1/webhook-endpoints'),
  webhookEndpoint: route<typeof webhooks.getWebhookEndpoint>('GET', '/v1/webhook-endpoints/:id'),
  updateWebhookEndpoint: route<typeof webhooks.updateWebhookEndpoint>('PATCH', '/v1/webhook-endpoints/:id'),
  rotateWebhookSecret: route<typeof webhooks.rotateWebhookSecret>('POST', '/v1/webhook-endpoints/:id/rotate-secret'),
  deliveryAttempts: route<typeof webhooks.listDeliveryAttempts>('GET', '/v1/webhook-endpoints/:id/deliveries'),
  webhookDelivery: route<typeof webhooks.getWebhookDelivery>('GET', '/v1/webhook-endpoints/:id/deliveries/:eventId'),
  redeliver: route<typeof webhooks.redeliverEvent>('POST', '/v1/webhook-endpoints/:id/deliveries/:eventId/redeliver'),
  // Customers, API keys and staff (admin)
  users: route<typeof accounts.listUsers>('GET', '/v1/users'),
  user: route<typeof accounts.getUser>('GET', '/v1/users/:id'),
  userSessions: route<typeof accounts.listUserSessions>('GET', '/v1/users/:id/sessions'),
  disableUser: route<typeof accounts.disableUser>('POST', '/v1/users/:id/disable'),
  enableUser: route<typeof accounts.enableUser>('POST', '/v1/users/:id/enable'),
  updateUser: route<typeof accounts.updateUser>('PATCH', '/v1/users/:id'),
  apiKeys: route<typeof accounts.listApiKeys>('GET', '/v1/api-keys'),
  createApiKey: route<typeof accounts.createApiKey>('POST', '/v1/api-keys'),
  revokeApiKey: route<typeof accounts.revokeApiKey>('DELETE', '/v1/api-keys/:id'),
  // Orders, catalog and stock (the Orders, Catalog and Stock pages).
  orders: route<typeof orders.listOrders>('GET', '/v1/orders'),
  order: route<typeof orders.getOrder>('GET', '/v1/orders/:id'),
  orderHistory: route<typeof orders.listOrderHistory>('GET', '/v1/orders/:id/history'),
  orderPayments: route<typeof payments.listOrderPayments>('GET', '/v1/orders/:id/payments'),
  orderLedgerEntries: route<typeof orders.listOrderLedgerEntries>('GET', '/v1/orders/:id/ledger-entries'),
  orderStockMovements: route<typeof orders.listOrderStockMovements>('GET', '/v1/orders/:id/stock-movements'),
  cancelOrder: route<typeof orders.cancelOrder>('POST', '/v1/orders/:id/cancel'),
  fulfilOrder: route<typeof orders.fulfilOrder>('POST', '/v1/orders/:id/fulfil'),
  products: route<typeof catalog.listProducts>('GET', '/v1/products'),
  createProduct: route<typeof catalog.createProduct>('POST', '/v1/products'),
  updateProduct: route<typeof catalog.updateProduct>('PATCH', '/v1/products/:id'),
  stockLevels: route<typeof catalog.listStock>('GET', '/v1/inventory'),
  stockLevel: route<typeof catalog.getStock>('GET', '/v1/inventory/:sku'),
  adjustStock: route<typeof catalog.adjustStock>('POST', '/v1/inventory/:sku/adjustments'),
  stockMovements: route<typeof catalog.listStockMovements>('GET', '/v1/inventory/:sku/movements'),
} as const;

export type Body<E extends Endpoint> = Extract<Result<E>, { ok: true }>['body'];
export type Overview = Body<typeof operations.operationsOverview>;
/** A signed-in session: its user and CSRF token. */
export type SessionInfo = { user: NonNullable<Body<typeof accounts.session>['user']>; csrfToken: string | null };
export type FailedJob = Body<typeof operations.listFailedJobs>['data'][number];
export type AuditRun = Body<typeof operations.runAudit>;
export type LedgerBalance = Body<typeof ledger.ledgerBalances>['data'][number];
export type QueueJob = Body<typeof operations.listQueueJobs>['data'][number];
export type Conversation = Body<typeof messaging.getConversation>;
export type Message = Body<typeof messaging.postMessage>;
export type WebhookEndpoint = Body<typeof webhooks.getWebhookEndpoint>;
export type DeliveryAttempt = Body<typeof webhooks.listDeliveryAttempts>['data'][number];
export type WebhookDelivery = Body<typeof webhooks.getWebhookDelivery>;
export type UserInfo = Body<typeof accounts.getUser>;
export type SessionRow = Body<typeof accounts.listUserSessions>['data'][number];
export type ApiKeyInfo = Body<typeof accounts.listApiKeys>['data'][number];
export type CreatedApiKey = Body<typeof accounts.createApiKey>;
export type Order = Body<typeof orders.getOrder>;
export type OrderStatus = Order['status'];
export type StatusChange = Body<typeof orders.listOrderHistory>['data'][number];
export type Payment = Body<typeof payments.listOrderPayments>['data'][number];
export type LedgerEntry = Body<typeof orders.listOrderLedgerEntries>['data'][number];
export type OrderStockMovement = Body<typeof orders.listOrderStockMovements>['data'][number];
export type Product = Body<typeof catalog.getProduct>;
export type StockLevel = Body<typeof catalog.getStock>;
export type StockMovement = Body<typeof catalog.listStockMovements>['data'][number];

export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem;
  constructor(status: number, problem: Problem) {
    super(problem.detail ?? problem.title);
    this.status = status;
    this.problem = problem;
  }
}

let csrfToken: string | null = null;
const unauthenticated = new Set<() => void>();

/** Remembers the CSRF token of the session (from login or GET /v1/auth/session). */
export function useCsrfToken(token: string | null): void {
  csrfToken = token;
}

/** Calls fn whenever the server answers 401: the session expired or was revoked. */
export function onUnauthenticated(fn: () => void): () => void {
  unauthenticated.add(fn);
  return () => unauthenticated.delete(fn);
}

const unsafe = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Sends one request; answers the result, errors included (a problem+json body). */
export async function call<E extends Endpoint>(r: Route<E>, input: Input<E>, signal?: AbortSignal): Promise<Result<E>> {
  const { params, body, query, idempotencyKey } = input as { params?: Record<string, unknown>; body?: unknown; query?: Record<string, unknown>; idempotencyKey?: string };
  let url: string = r.url.replace(/:(\w+)/g, (_, name: string) => encodeURIComponent(String(params?.[name] ?? '')));
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== null) search.set(k, String(v));
  if (search.size > 0) url += `?${search}`;
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (idempotencyKey) headers['idempotency-key'] = idempotencyKey;
  if (unsafe.has(r.method) && csrfToken) headers['x-csrf-token'] = csrfToken;
  const res = await fetch(url, { method: r.method, headers, credentials: 'same-origin', ...(body !== undefined ? { body: JSON.stringify(body) } : {}), ...(signal ? { signal } : {}) });
  const text = await res.text();
  const parsed: unknown = text.length > 0 && /json/.test(res.headers.get('content-type') ?? '') ? JSON.parse(text) : null;
  if (res.status === 401 && r !== (routes.login as unknown)) for (const fn of unauthenticated) fn();
  return { status: res.status, ok: res.ok, body: parsed, headers: Object.fromEntries(res.headers) } as Result<E>;
}

/** call(), answering the body of a success and throwing ApiError otherwise. */
export async function ok<E extends Endpoint>(r: Route<E>, input: Input<E>, signal?: AbortSignal): Promise<Body<E>> {
  const result = await call(r, input, signal);
  if (!result.ok) {
    const problem = (result.body as Problem | null) ?? { type: 'about:blank', title: `HTTP ${result.status}`, status: result.status, code: 'internal' } as Problem;
    throw new ApiError(result.status, problem);
  }
  return result.body as Body<E>;
}

/** A fresh Idempotency-Key: made once per action the operator confirms, and reused if that action is sent again. */
export function newIdempotencyKey(): string {
  return `console-${crypto.randomUUID()}`;
}
