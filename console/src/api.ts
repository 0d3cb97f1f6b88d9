// The console's one door to Engine Room: `api`, the published client (@engine-room/client,
// packages/client) set up for a page served by the API itself. Its methods and types are generated
// from the server's endpoint declarations (through the OpenAPI document), so the console restates
// no route: api.getOrder({ params: { id } }) is GET /v1/orders/{id} because the server says so.
//
// What the console adds to the client, here only:
// - the session cookie (same origin, HttpOnly, set by login) and X-CSRF-Token on unsafe requests:
//   login answers the CSRF token, and GET /v1/auth/session answers it again after a reload;
// - a 401 from anything but login means the session ended: onUnauthenticated's listeners hear it;
// - no retries of the client's own: the operator retries, an action keeping its Idempotency-Key
//   (ConfirmAction), and the live pages refresh on their own tick; a hidden wait of up to 10 s
//   behind a 429 or 503 would only leave a button spinning;
// - an error answer that is not problem+json (a proxy's 502 page) still throws ApiError, with a
//   problem made of its status, and errorText shows the problem's own words to the operator.
import {
  ApiError,
  createClient,
  fetchTransport,
  operations,
  type Output,
  type Problem,
  type RawResponse,
} from '../../packages/client/src/index.ts';

export { ApiError };

export type Overview = Output<'operationsOverview'>;
/** A signed-in session: its user and CSRF token. */
export type SessionInfo = { user: NonNullable<Output<'session'>['user']>; csrfToken: string | null };
export type FailedJob = Output<'listFailedJobs'>['data'][number];
export type AuditRun = Output<'runAudit'>;
export type LedgerBalance = Output<'ledgerBalances'>['data'][number];
export type QueueJob = Output<'listQueueJobs'>['data'][number];
export type Conversation = Output<'getConversation'>;
export type Message = Output<'postMessage'>;
export type WebhookEndpoint = Output<'getWebhookEndpoint'>;
export type DeliveryAttempt = Output<'listDeliveryAttempts'>['data'][number];
export type WebhookDelivery = Output<'getWebhookDelivery'>;
export type UserInfo = Output<'getUser'>;
export type SessionRow = Output<'listUserSessions'>['data'][number];
export type ApiKeyInfo = Output<'listApiKeys'>['data'][number];
export type CreatedApiKey = Output<'createApiKey'>;
export type Order = Output<'getOrder'>;
export type OrderStatus = Order['status'];
export type StatusChange = Output<'listOrderHistory'>['data'][number];
export type Payment = Output<'listOrderPayments'>['data'][number];
export type LedgerEntry = Output<'listOrderLedgerEntries'>['data'][number];
export type OrderStockMovement = Output<'listOrderStockMovements'>['data'][number];
export type Product = Output<'getProduct'>;
export type StockLevel = Output<'getStock'>;
export type StockMovement = Output<'listStockMovements'>['data'][number];

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

const send = fetchTransport('', { credentials: 'same-origin' });

/** A problem+json body for an error answer that has none, so that every failure is an ApiError with a problem. */
function withProblem(res: RawResponse): RawResponse {
  if (res.status < 400 || /json/i.test(res.headers['content-type'] ?? '')) return res;
  const problem: Problem = { type: 'about:blank', title: `HTTP ${res.status}`, status: res.status, code: 'internal' };
  return {
    ...res,
    headers: { ...res.headers, 'content-type': 'application/problem+json' },
    body: JSON.stringify(problem),
  };
}

export const api = createClient({
  baseUrl: '',
  csrfToken: () => csrfToken ?? undefined,
  retry: false,
  transport: async (request) => {
    const res = withProblem(await send(request));
    if (res.status === 401 && request.url !== operations.login.path) for (const fn of unauthenticated) fn();
    return res;
  },
});

/** What the operator reads of a failure: the problem's detail (or title), else the error's message. */
export function errorText(error: unknown): string {
  if (error instanceof ApiError) return error.problem.detail ?? error.problem.title;
  return error instanceof Error ? error.message : String(error);
}

/** A fresh Idempotency-Key: made once per action the operator confirms, and reused if that action is sent again. */
export function newIdempotencyKey(): string {
  return `console-${crypto.randomUUID()}`;
}
