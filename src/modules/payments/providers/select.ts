// The provider the configuration names: the sandbox processor unless Stripe is chosen.
import type { Db } from '../../../platform/db.ts';
import type { PaymentProvider } from './provider.ts';
import { createSandboxProvider } from './sandbox.ts';
import { createStripeProvider } from './stripe.ts';

export interface PaymentProviderConfig {
  paymentProvider: 'sandbox' | 'stripe';
  stripeSecretKey?: string | undefined;
  /** Only to point the adapter at a local fake or stripe-mock; live Stripe otherwise. */
  stripeApiBase?: string | undefined;
  stripeTimeoutMs?: number | undefined;
  sandboxSlowDelayMs?: number | undefined;
}

export function createPaymentProvider(config: PaymentProviderConfig, db: Db): PaymentProvider {
  if (config.paymentProvider === 'stripe') {
    if (!config.stripeSecretKey) throw new Error('the stripe payment provider needs STRIPE_SECRET_KEY');
    return createStripeProvider({ secretKey: config.stripeSecretKey, apiBase: config.stripeApiBase, timeoutMs: config.stripeTimeoutMs });
  }
  return createSandboxProvider(db, { slowDelayMs: config.sandboxSlowDelayMs });
}
