// The one error catalog: a stable code, its HTTP status and title, declared once. Domain code
// throws `new AppError('out_of_stock', detail)`; the HTTP layer turns it into problem+json in one
// place (src/platform/http.ts) and hides everything about errors it does not know.

export const errorCatalog = {
  validation_failed: { status: 400, title: 'Validation failed' },
  bad_request: { status: 400, title: 'Bad request' },
  unauthenticated: { status: 401, title: 'Authentication required' },
  invalid_credentials: { status: 401, title: 'Invalid credentials' },
  forbidden: { status: 403, title: 'Forbidden' },
  account_disabled: { status: 403, title: 'Account disabled' },
  email_unverified: { status: 403, title: 'Email not verified' },
  invalid_token: { status: 400, title: 'Invalid or expired token' },
  not_found: { status: 404, title: 'Not found' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  uri_too_long: { status: 414, title: 'URI too long' },
  email_taken: { status: 409, title: 'Email taken' },
  sku_taken: { status: 409, title: 'SKU taken' },
  out_of_stock: { status: 409, title: 'Out of stock' },
  insufficient_stock: { status: 409, title: 'Insufficient stock' },
  invalid_state: { status: 409, title: 'Invalid state' },
  idempotency_key_in_use: { status: 409, title: 'Idempotency key in use' },
  unknown_sku: { status: 422, title: 'Unknown SKU' },
  currency_mismatch: { status: 422, title: 'Currency mismatch' },
  idempotency_key_reused: { status: 422, title: 'Idempotency key reused' },
  limit_exceeded: { status: 422, title: 'Limit exceeded' },
  idempotency_key_required: { status: 400, title: 'Idempotency key required' },
  payload_too_large: { status: 413, title: 'Payload too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported media type' },
  rate_limited: { status: 429, title: 'Too many requests' },
  internal: { status: 500, title: 'Internal server error' },
  unavailable: { status: 503, title: 'Service unavailable' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof errorCatalog;

export interface FieldError {
  path: string;
  message: string;
}

export interface ErrorExtra {
  errors?: FieldError[];
  retryAfterSeconds?: number;
  headers?: Record<string, string>;
}

export class AppError extends Error {
  readonly status: number;
  readonly code: ErrorCode;
  readonly extra: ErrorExtra;
  constructor(code: ErrorCode, detail?: string, extra: ErrorExtra = {}) {
    super(detail ?? errorCatalog[code].title);
    this.code = code;
    this.extra = extra;
    this.status = errorCatalog[code].status;
  }
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  code: ErrorCode;
  detail?: string;
  errors?: FieldError[];
}

export function problem(code: ErrorCode, detail?: string, errors?: FieldError[]): Problem {
  const { status, title } = errorCatalog[code];
  return {
    type: `https://engine-room.dev/problems/${code.replace(/_/g, '-')}`,
    title,
    status,
    code,
    ...(detail ? { detail } : {}),
    ...(errors?.length ? { errors } : {}),
  };
}
