// The provider the configuration names: the sandbox processor unless Stripe is chosen.
import type { Db } from '../../../platform/db.ts';
import type { PaymentProvider } from './provider.ts';
import { createSandboxProvider } from './sandbox.ts';

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
    const options = {
      secretKey: config.stripeSecretKey,
      apiBase: config.stripeApiBase,
      timeoutMs: config.stripeTimeoutMs,
    };
    // Loaded on first use: the stripe package takes a tenth of a second to import, which every
    // start would pay, sandbox or not.
    let adapter: Promise<PaymentProvider> | undefined;
    const stripe = () => (adapter ??= import('./stripe.ts').then((m) => m.createStripeProvider(options)));
    return {
      name: 'stripe',
      charge: async (request) => (await stripe()).charge(request),
      refund: async (request) => (await stripe()).refund(request),
    };
  }
  return createSandboxProvider(db, { slowDelayMs: config.sandboxSlowDelayMs });
}
