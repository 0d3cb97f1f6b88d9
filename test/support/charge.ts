// Charging one payment outside the queue, as the charge job's batch handler would with a batch of
// one: for tests that drive a charge (or two at once) themselves.
import type { Db } from '../../src/platform/db.ts';
import { chargeMany } from '../../src/modules/orders/lifecycle.ts';
import type { PaymentProvider } from '../../src/modules/payments/providers/provider.ts';
import type { ChargeOptions } from '../../src/modules/payments/service.ts';

/** Charges one payment (chargeMany for one); throws when it must be tried again later. */
export async function chargeOnce(
  db: Db,
  provider: PaymentProvider,
  paymentId: string,
  options: ChargeOptions = {},
): Promise<void> {
  const retry = await chargeMany(db, provider, [paymentId], options);
  const err = retry.get(paymentId);
  if (err) throw err;
}
