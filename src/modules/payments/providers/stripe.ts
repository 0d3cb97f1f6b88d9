// The Stripe adapter, on the official `stripe` package: a charge is a PaymentIntent created and
// confirmed server-side in one request; a refund is a Refund of that PaymentIntent. Our idempotency
// key travels as Stripe's Idempotency-Key, so a retry of ours is deduplicated by Stripe itself.
//
// Tested only against a local fake of the endpoints it calls (test/support/fake-stripe.ts), never
// against live Stripe.
//
// Two limits of Stripe's idempotency that the queue's retry policy must respect: a key is kept
// about 24 hours (a retry after that could charge again), and a 500 that Stripe recorded under a
// key is replayed to every retry with that key (the job then ends in the dead letter, for a person
// to reconcile in the Stripe dashboard).
import Stripe from 'stripe';
import {
  idempotencyKeyReused,
  processorCode,
  type ChargeRequest,
  type ChargeResult,
  type PaymentProvider,
  type ProviderResult,
  type RefundRequest,
  type RefundResult,
} from './provider.ts';

export interface StripeOptions {
  /** The secret key (sk_live_... or sk_test_...). */
  secretKey: string;
  /** Where the API is: https://api.stripe.com, unless a test points the adapter at a local fake. */
  apiBase?: string;
  /**
   * Milliseconds to wait for an answer before calling the outcome unknown (retryable). Shorter
   * than the queue's job lease, so a job never outlives its lease waiting on Stripe.
   */
  timeoutMs?: number;
}

/**
 * The largest answer read from Stripe. Its objects are a few kilobytes; a bigger answer is not
 * Stripe's (a proxy's error page, something answering in its place) and is not buffered further.
 */
export const maxResponseBytes = 256 * 1024;

/**
 * fetch, with the answer's body read here and refused past maxBytes, so nothing on the other end
 * can make us buffer without limit. The refusal reaches the adapter as a connection error: the
 * outcome is unknown and the charge is asked again with its key (or ends in the dead letter).
 */
export function fetchWithBodyCap(maxBytes: number, fetchFn: typeof fetch = globalThis.fetch): typeof fetch {
  return async (input, init) => {
    const res = await fetchFn(input, init);
    const tooLarge = () => new Error(`the answer is larger than ${maxBytes} bytes`);
    if (Number(res.headers.get('content-length')) > maxBytes) {
      await res.body?.cancel();
      throw tooLarge();
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    if (res.body) {
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        size += value.byteLength;
        if (size > maxBytes) {
          await reader.cancel();
          throw tooLarge();
        }
        chunks.push(value);
      }
    }
    const noBody = res.status === 204 || res.status === 205 || res.status === 304;
    return new Response(noBody ? null : Buffer.concat(chunks), {
      status: res.status,
      statusText: res.statusText,
      headers: res.headers,
    });
  };
}

const {
  StripeCardError,
  StripeConnectionError,
  StripeRateLimitError,
  StripeIdempotencyError,
  StripeInvalidRequestError,
  StripeAPIError,
  StripeError,
} = Stripe.errors;

export function createStripeProvider(options: StripeOptions): PaymentProvider {
  const base = new URL(options.apiBase ?? 'https://api.stripe.com');
  const protocol = base.protocol === 'http:' ? 'http' : 'https';
  const stripe = new Stripe(options.secretKey, {
    host: base.hostname,
    port: base.port || (protocol === 'http' ? 80 : 443),
    protocol,
    // No retries inside the package: our durable queue retries every charge with the same key,
    // with backoff and a dead letter, and survives a crash. Retries in here would hide attempts
    // from it and stretch one job past its lease. (The package still retries once a request whose
    // connection was closed under it; that retry carries our key too, so it cannot charge twice.)
    maxNetworkRetries: 0,
    timeout: options.timeoutMs ?? 30_000,
    telemetry: false,
    httpClient: Stripe.createFetchHttpClient(fetchWithBodyCap(maxResponseBytes)),
  });

  async function charge(request: ChargeRequest): Promise<ChargeResult> {
    try {
      let intent = await stripe.paymentIntents.create(
        {
          amount: request.amount.amount,
          currency: request.amount.currency.toLowerCase(),
          payment_method: request.token,
          confirm: true,
          // Confirmed on the server, with no page to send the customer to: no payment methods that
          // redirect, and a card that asks for 3-D Secure fails now (a card_error) instead of
          // leaving an intent waiting for an action no one will take.
          automatic_payment_methods: { enabled: true, allow_redirects: 'never' },
          error_on_requires_action: true,
          metadata: { orderId: request.orderId },
          ...(request.description ? { description: request.description } : {}),
        },
        { idempotencyKey: request.idempotencyKey },
      );
      // A retry with the key replays the FIRST answer, which may be "processing": ask for now.
      if (
        intent.status !== 'succeeded' &&
        intent.status !== 'requires_payment_method' &&
        intent.status !== 'canceled'
      ) {
        intent = await stripe.paymentIntents.retrieve(intent.id);
      }
      if (intent.status === 'succeeded') {
        // What Stripe says it charged, and for which order: the payments service checks both
        // against the request before it records anything (a success for another amount is not one).
        return {
          status: 'succeeded',
          providerRef: intent.id,
          charged: { amount: intent.amount, currency: String(intent.currency ?? '').toUpperCase() },
          orderId: typeof intent.metadata?.orderId === 'string' ? intent.metadata.orderId : null,
        };
      }
      if (intent.status === 'requires_payment_method' || intent.status === 'canceled') {
        const error = intent.last_payment_error;
        return {
          status: 'declined',
          reason:
            processorCode(error?.decline_code) ??
            processorCode(error?.code) ??
            (intent.status === 'canceled' ? 'canceled' : 'card_declined'),
          ...(error?.message ? { detail: error.message } : {}),
        };
      }
      return { status: 'retryable', reason: `payment intent ${intent.id} is ${intent.status}` };
    } catch (err) {
      return failure(err, request.idempotencyKey);
    }
  }

  async function refund(request: RefundRequest): Promise<RefundResult> {
    try {
      const refund = await stripe.refunds.create(
        { payment_intent: request.providerRef, amount: request.amount.amount },
        { idempotencyKey: request.idempotencyKey },
      );
      // pending: Stripe accepted it and will not do it twice; cards settle it without us.
      if (refund.status === 'succeeded' || refund.status === 'pending') {
        return {
          status: 'succeeded',
          providerRef: refund.id,
          refunded: { amount: refund.amount, currency: String(refund.currency ?? '').toUpperCase() },
        };
      }
      if (refund.status === 'failed' || refund.status === 'canceled')
        return { status: 'declined', reason: processorCode(refund.failure_reason) ?? 'refund_failed' };
      return { status: 'retryable', reason: `refund ${refund.id} is ${refund.status}` };
    } catch (err) {
      return failure(err, request.idempotencyKey);
    }
  }

  return { name: 'stripe', charge, refund };
}

/**
 * Stripe's errors as outcomes; what no retry can fix and is no verdict on the payment is thrown.
 * A decline's reason is a code (Stripe's, when it is a plain identifier); Stripe's message, free
 * text from outside, goes only in `detail` (staff and logs), never to the customer.
 */
function failure(err: unknown, idempotencyKey: string): ProviderResult<never> {
  if (!(err instanceof StripeError)) throw err;
  const detail = err.message ? { detail: err.message } : {};
  // The bank said no (or the card wants an authentication we cannot ask for).
  if (err instanceof StripeCardError)
    return {
      status: 'declined',
      reason: processorCode(err.decline_code) ?? processorCode(err.code) ?? 'card_declined',
      ...detail,
    };
  // A timeout or a broken connection: Stripe may or may not have done it; the same key will tell.
  if (err instanceof StripeConnectionError) {
    const cause = (err as { detail?: unknown }).detail;
    return {
      status: 'retryable',
      reason: `no answer from Stripe: ${err.message}${cause instanceof Error ? ` (${cause.message})` : ''}`,
    };
  }
  if (err instanceof StripeRateLimitError) return { status: 'retryable', reason: 'rate_limited by Stripe' };
  // 400 idempotency_error: this key came before with other parameters. A bug of ours.
  if (err instanceof StripeIdempotencyError) throw idempotencyKeyReused(idempotencyKey, err.message);
  // 409: a request with this key is still in flight at Stripe; 5xx: Stripe's fault, or an answer
  // we could not read. Asking again with the key is the documented remedy.
  if (
    err.statusCode === 409 ||
    (err.statusCode ?? 0) >= 500 ||
    (err instanceof StripeAPIError && err.statusCode === undefined)
  ) {
    return { status: 'retryable', reason: `Stripe answered ${err.statusCode ?? 'garbage'}: ${err.message}` };
  }
  // A request Stripe refuses for this payment (an unknown payment method, an amount below the
  // minimum, a refund larger than what is left): the same request would be refused again.
  if (err instanceof StripeInvalidRequestError)
    return {
      status: 'declined',
      reason: `refused_by_processor${processorCode(err.code) ? `: ${err.code}` : ''}`,
      ...detail,
    };
  // 401/403 and the like: our configuration is wrong. Fail the job loudly; no order is declined.
  throw new Error(`Stripe refused our request (${err.type}, status ${err.statusCode ?? 'none'}): ${err.message}`, {
    cause: err,
  });
}
