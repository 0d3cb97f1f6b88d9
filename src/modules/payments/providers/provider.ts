// The one interface every payment provider's adapter implements: the sandbox processor
// (sandbox.ts) and Stripe (stripe.ts). An adapter speaks to the processor and answers what happened;
// it never touches our business tables and never decides an order's fate: the payments service
// checks its answers and the order lifecycle (modules/orders/lifecycle.ts) owns the transition and
// the ledger.
//
// Expected outcomes are results, not exceptions: a decline is an answer, and so is "could not tell"
// (a timeout, a lost answer, a 5xx, a rate limit), which is `retryable`: the caller must ask again
// with the SAME idempotency key, and the processor then performs the operation at most once and
// answers the original result. A throw means a fault of ours (a bad secret key, a request the
// processor calls malformed, one key reused for a different request): the job should fail loudly,
// not mark an order as declined while money may have moved.
//
// Call an adapter outside any database transaction: it may wait seconds on the network, and the
// sandbox opens transactions of its own (on PGlite, one connection, that would wait forever).
import type { Money } from '../../../platform/schemas.ts';

export interface ChargeRequest {
  /** Stable for one payment: the same on every retry, so the processor charges at most once. */
  idempotencyKey: string;
  amount: Money;
  /** The card token or payment method the customer gave (sandbox: tok_ok, tok_declined, ...). */
  token: string;
  /** Recorded by the processor as metadata, for reconciliation. */
  orderId: string;
  description?: string;
}

export interface RefundRequest {
  /** Stable for one refund: the same on every retry, so the processor refunds at most once. */
  idempotencyKey: string;
  /** The providerRef a successful charge answered. */
  providerRef: string;
  amount: Money;
}

/**
 * What a processor answered. A decline's `reason` is in our own words (a code of our vocabulary,
 * or the processor's code when it is a plain identifier, see processorCode): it is shown to the
 * customer. The processor's own text goes in `detail`, for staff and logs only: it is free text
 * from outside (it may carry markup, or anything else) and is never shown to a customer.
 */
export type ProviderResult<Done = object> =
  /** Done. providerRef is the processor's id of the charge (or of the refund). */
  | ({ status: 'succeeded'; providerRef: string } & Done)
  /** Refused for good: asking again with the same key answers the same. */
  | { status: 'declined'; reason: string; detail?: string }
  /** Unknown or transient: ask again later with the same key. */
  | { status: 'retryable'; reason: string };

/**
 * A success says what the processor reports it charged, and for which order (the reference we
 * sent it): the payments service checks both against what it asked before it records anything.
 */
export type ChargeResult = ProviderResult<{ charged: Money; orderId: string | null }>;
/** A success says what the processor reports it refunded, checked likewise. */
export type RefundResult = ProviderResult<{ refunded: Money }>;

/**
 * A processor's code (a decline code, an error code) when it is a plain identifier, else null:
 * what passes can be shown as it is; free text and markup cannot pass.
 */
export function processorCode(value: unknown): string | null {
  return typeof value === 'string' && /^[a-z0-9_]{1,64}$/.test(value) ? value : null;
}

export interface PaymentProvider {
  /** Which processor this is, as recorded next to a payment. */
  readonly name: 'sandbox' | 'stripe';
  charge(request: ChargeRequest): Promise<ChargeResult>;
  refund(request: RefundRequest): Promise<RefundResult>;
}

/**
 * The same idempotency key came with a different request: a bug of the caller, never an outcome,
 * so adapters throw it (a plain Error: it never reaches an HTTP client as such).
 */
export function idempotencyKeyReused(idempotencyKey: string, detail: string): Error {
  return new Error(
    `idempotency key ${JSON.stringify(idempotencyKey)} was used before for a different request (${detail})`,
  );
}
