// The life of an order after it is placed (placing it: place.ts): every change of its status, and
// in the same transaction the writes that go with it: its stock settled, released or returned, the
// ledger postings, the order's events (and the emails they ask for), the refund it is owed. The
// state machine (state-machine.ts) is its data: each change is a conditional UPDATE made from it.
//
// The payments module talks to the processor and keeps the payment and refund rows; it hands over
// verdicts (charged as asked, declined, charged but not as asked; refunded or not) and this file
// decides what they mean for the order and the books. So the rules that span both (a capture for
// a cancelled order is refunded, for any other state flagged and never refunded; what the ledger
// holds) are read in one place.
//
// Why recording cannot charge or post twice: the payment is settled by a conditional update
// (`WHERE status = 'pending'`) and the ledger posting is unique per payment and kind, so recording
// an outcome twice changes nothing. Orders are locked before their payments, everywhere (cancel and
// charge recording alike), and stock rows in SKU order, so none of these transactions deadlock.
import type { Db, Tx } from '../../platform/db.ts';
import type { JobLog } from '../../platform/log.ts';
import type { Principal } from '../../platform/auth.ts';
import { releaseReservation, returnSoldStock, settleReservations } from '../catalog/inventory.ts';
import { postCaptures, postRefund } from '../ledger/ledger.ts';
import { requestRefund } from '../payments/outbox.ts';
import type { PaymentProvider } from '../payments/providers/provider.ts';
import { flagForReview, type PaymentRow } from '../payments/repo.ts';
import {
  chargePayments,
  sendRefund,
  settleCharges,
  settleRefund,
  type ChargeOptions,
  type ChargeVerdict,
} from '../payments/service.ts';
import { publishOrderEvent, publishOrderEvents } from './events.ts';
import * as repo from './repo.ts';
import type { Order } from './schemas.ts';
import { ownerFilter } from './service.ts';
import { orderView } from './view.ts';

export async function cancelOrder(tx: Tx, principal: Principal, id: string): Promise<Order> {
  const { order, from } = await repo.transitionOrder(tx, id, 'cancelled', ownerFilter(principal));
  const lines = await repo.linesOf(tx, [id]);
  if (from === 'pending_payment') {
    await releaseReservation(tx, id, lines);
  } else {
    // A paid order: its units come back to stock and its payment is refunded in full, once.
    await returnSoldStock(tx, id, lines);
    await requestRefund(tx, id);
  }
  await publishOrderEvent(tx, 'order.cancelled', order, lines);
  return orderView(order, lines);
}

export async function fulfilOrder(tx: Tx, id: string): Promise<Order> {
  const { order } = await repo.transitionOrder(tx, id, 'fulfilled');
  const lines = await repo.linesOf(tx, [id]);
  await publishOrderEvent(tx, 'order.fulfilled', order, lines);
  return orderView(order, lines);
}

/**
 * Cancels orders left in pending_payment longer than the timeout and releases their stock, each in
 * a transaction of its own (a conditional transition, so a payment that lands meanwhile wins or
 * loses cleanly). An order that cannot be cancelled (a fault: say, an amount from before the money
 * bounds that cannot be read exactly) is logged and skipped, and the run goes on past it, page by
 * page in id order, so that no such order can hold up the others. Answers how many it cancelled.
 */
export async function expireUnpaidOrders(
  db: Db,
  timeoutSeconds: number,
  options: { batch?: number; log?: JobLog } = {},
): Promise<number> {
  const batch = options.batch ?? 500;
  let cancelled = 0;
  let after = '';
  for (;;) {
    const stale = await db.query<{ id: string }>(
      `SELECT id FROM orders WHERE status = 'pending_payment' AND created_at < now() - make_interval(secs => $1) AND id > $3 ORDER BY id LIMIT $2`,
      [timeoutSeconds, batch, after],
    );
    for (const { id } of stale) {
      try {
        if (await db.transaction((tx) => expireOrder(tx, id))) cancelled++;
      } catch (err) {
        options.log?.error({ err, orderId: id }, 'could not cancel an unpaid order past its timeout; skipped');
      }
    }
    if (stale.length < batch) return cancelled;
    after = stale[stale.length - 1]!.id;
  }
}

async function expireOrder(tx: Tx, id: string): Promise<boolean> {
  const order = await repo.lockOrder(tx, id);
  if (order?.status !== 'pending_payment') return false;
  const { order: updated } = await repo.transitionOrder(tx, id, 'cancelled');
  const lines = await repo.linesOf(tx, [id]);
  await releaseReservation(tx, id, lines);
  await publishOrderEvent(tx, 'order.cancelled', updated, lines);
  return true;
}

/** A payment an operator must look at, and why. */
interface Review {
  paymentId: string;
  orderId: string;
  reason: string;
}

/**
 * The charge jobs' handler: charges a batch of payments (the processor calls run side by side,
 * payments/service.ts) and records every outcome in one transaction. Answers, per payment that
 * must be tried again later, why (the others are done: charged, declined, or settled before by
 * another run). One payment that cannot be read, charged or recorded (a fault) fails alone and is
 * logged; the rest of the batch goes on.
 */
export async function chargeMany(
  db: Db,
  provider: PaymentProvider,
  paymentIds: string[],
  options: ChargeOptions = {},
): Promise<Map<string, Error>> {
  const { verdicts, retry } = await chargePayments(db, provider, paymentIds, options);
  const fault = (paymentId: string, err: unknown) => {
    retry.set(paymentId, err instanceof Error ? err : new Error(String(err)));
    options.log?.error({ err, paymentId }, 'could not record the outcome of a charge');
  };
  if (verdicts.length > 0) {
    let reviews: Review[] = [];
    try {
      reviews = await db.transaction((tx) => recordCharges(tx, verdicts));
    } catch (err) {
      // A fault: so that one bad payment cannot hold up the others, each is recorded on its own
      // (the processor calls are done and keyed, so only the recording is repeated).
      if (verdicts.length === 1) fault(verdicts[0]!.payment.id, err);
      else {
        // Said, so that a batch that always falls back (a bug, not one bad payment) is seen.
        options.log?.warn(
          { err, payments: verdicts.length },
          'could not record a batch of charge outcomes; recording each alone',
        );
        for (const verdict of verdicts) {
          try {
            reviews.push(...(await db.transaction((tx) => recordCharges(tx, [verdict]))));
          } catch (e) {
            fault(verdict.payment.id, e);
          }
        }
      }
    }
    for (const r of reviews)
      options.log?.error(
        { paymentId: r.paymentId, orderId: r.orderId, reason: r.reason },
        "a payment needs an operator's review",
      );
  }
  return retry;
}

/**
 * Records the outcomes of a batch of charges. The orders are locked first, in id order (the same
 * order-then-payment order as cancelling, so the two never deadlock and whichever comes second sees
 * what the first did); a payment settled before is skipped. A capture posts to the ledger and pays
 * its order, or, when the order was cancelled while the charge was in flight, is refunded (the books
 * balance whichever came first). A decline, or an answer that does not match the charge, fails its
 * order and releases its stock (the latter is also left for an operator, with nothing posted). The
 * stock rows, which a flash sale's orders all share, are settled last and once for the whole batch.
 * Answers the payments that need an operator's review.
 */
async function recordCharges(tx: Tx, verdicts: ChargeVerdict[]): Promise<Review[]> {
  const current = new Map(
    (await repo.lockOrders(tx, [...new Set(verdicts.map((v) => v.payment.order_id))])).map((o) => [o.id, o]),
  );
  const settled = await settleCharges(tx, verdicts);
  if (settled.length === 0) return [];
  const captured = settled.filter((p) => p.status === 'succeeded');
  await postCaptures(
    tx,
    captured
      .filter((p) => p.amount > 0)
      .map((p) => ({ orderId: p.order_id, paymentId: p.id, amount: p.amount, currency: p.currency })),
  );

  const orderStatus = (p: PaymentRow) => current.get(p.order_id)?.status;
  const wasPending = (p: PaymentRow) => orderStatus(p) === 'pending_payment';
  const paid = await repo.transitionOrders(
    tx,
    captured.filter(wasPending).map((p) => p.order_id),
    'paid',
  );
  const failed = await repo.transitionOrders(
    tx,
    settled.filter((p) => p.status === 'failed' && wasPending(p)).map((p) => p.order_id),
    'payment_failed',
  );
  const lines = await repo.linesOf(
    tx,
    [...paid, ...failed].map((o) => o.id),
  );
  const linesOf = (orderId: string) => lines.filter((l) => l.order_id === orderId);
  await publishOrderEvents(
    tx,
    'order.paid',
    paid.map((order) => ({ order, lines: linesOf(order.id) })),
  );
  await publishOrderEvents(
    tx,
    'order.payment_failed',
    failed.map((order) => ({ order, lines: linesOf(order.id) })),
  );
  // Cancelled while the charge was in flight (the cancel released the stock): refunded in full.
  for (const p of captured.filter((c) => orderStatus(c) === 'cancelled')) await requestRefund(tx, p.order_id);
  // A capture for an order in any other state (paid, failed or fulfilled already: no path of ours
  // leads here) is recorded as what happened, and left to an operator rather than refunded: a
  // refund could return the money of an order that was paid and shipped.
  const unexpected = captured
    .filter((c) => !wasPending(c) && orderStatus(c) !== 'cancelled')
    .map((p) => ({
      paymentId: p.id,
      orderId: p.order_id,
      reason: `captured while its order was ${orderStatus(p) ?? 'missing'}`,
    }));
  await flagForReview(
    tx,
    unexpected.map((r) => ({ id: r.paymentId, reason: r.reason })),
  );
  await settleReservations(tx, [
    ...paid.flatMap((o) =>
      linesOf(o.id).map((l) => ({ orderId: o.id, sku: l.sku, quantity: l.quantity, kind: 'sale' as const })),
    ),
    ...failed.flatMap((o) =>
      linesOf(o.id).map((l) => ({ orderId: o.id, sku: l.sku, quantity: l.quantity, kind: 'release' as const })),
    ),
  ]);
  const mismatched = new Map(
    verdicts.flatMap(({ payment, result }) =>
      result.status === 'mismatch' ? [[payment.id, result.detail] as const] : [],
    ),
  );
  return [
    ...settled
      .filter((p) => mismatched.has(p.id))
      .map((p) => ({ paymentId: p.id, orderId: p.order_id, reason: mismatched.get(p.id)! })),
    ...unexpected,
  ];
}

/**
 * The refund jobs' handler: sends the refund (payments/service.ts) and records its outcome: the
 * refund and payment rows and, when the money went back, the ledger's refund, in one transaction.
 */
export async function refundOnce(
  db: Db,
  provider: PaymentProvider,
  refundId: string,
  options: { log?: JobLog } = {},
): Promise<void> {
  const verdict = await sendRefund(db, provider, refundId);
  if (!verdict) return;
  const { refund, result, mismatch } = verdict;
  await db.transaction(async (tx) => {
    if (await settleRefund(tx, verdict))
      await postRefund(tx, {
        orderId: refund.order_id,
        paymentId: refund.payment_id,
        amount: refund.amount,
        currency: refund.currency,
      });
  });
  if (mismatch)
    options.log?.error(
      { refundId, paymentId: refund.payment_id, reason: mismatch },
      "a payment needs an operator's review",
    );
  else if (result.status === 'declined')
    options.log?.warn(
      { refundId, paymentId: refund.payment_id, reason: result.reason, detail: result.detail },
      'the processor declined a refund',
    );
}
