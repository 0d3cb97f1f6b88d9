// Placing orders, together: the orders that arrive while earlier ones are being written share one
// transaction (group commit in the application). A hot SKU's row lock and a commit's WAL flush are
// then paid once per batch, not once per order, and each statement carries the whole batch, so
// the database does a handful of round trips for 30 orders instead of a dozen per order.
//
// Each request still gets its own answer, stored under its own Idempotency-Key in the same
// transaction: a batch is only a way of writing, never a way of deciding. Orders are decided one by
// one, in arrival order, against stock rows locked for the whole batch; one that does not fit is
// refused (409 out_of_stock) without touching the others. A fault (not a business refusal) rolls the
// batch back, and its requests are then run one by one, so one bad request cannot fail the rest.
//
// With little load a batch is one order and nothing waits: a request starts at once while fewer
// than `concurrency` batches are running, and only waits when all are.
import type { Db, Tx } from '../../platform/db.ts';
import type { Principal } from '../../platform/auth.ts';
import { newId } from '../../platform/ids.ts';
import { inBatchSpan } from '../../platform/tracing.ts';
import {
  claimKeys,
  failureOutcome,
  priorOutcomes,
  storeOutcomes,
  type KeyedRequest,
  type Outcome,
} from '../../platform/idempotency.ts';
import { AppError, type FieldError } from '../../errors.ts';
import { lockPricedStock, outOfStock, reserveForOrders, type PricedSku } from '../catalog/inventory.ts';
import { requestCharges, type ChargeRetryBudget } from '../payments/outbox.ts';
import { publishOrderEvents } from './events.ts';
import * as repo from './repo.ts';
import { limits, maxOrderTotal } from '../../limits.ts';
import { orderView } from './view.ts';

export interface PlaceOrderInput {
  lines: { sku: string; quantity: number }[];
  payment: { method: 'card'; token: string };
}

export interface OrderRequest {
  keyed: KeyedRequest;
  principal: Principal;
  input: PlaceOrderInput;
  /** The request's trace (tracing on): its order's charge job joins it. */
  traceparent?: string | undefined;
}

export interface Answer {
  outcome: Outcome;
  replayed: boolean;
}

export interface MergedLine {
  sku: string;
  quantity: number;
  firstIndex: number;
}

/** Lines naming the same SKU become one line with the summed quantity, in first-seen order. */
export function mergeLines(lines: { sku: string; quantity: number }[]): MergedLine[] {
  const merged = new Map<string, MergedLine>();
  lines.forEach((line, i) => {
    const seen = merged.get(line.sku);
    if (seen) seen.quantity += line.quantity;
    else merged.set(line.sku, { ...line, firstIndex: i });
  });
  return [...merged.values()];
}

export function checkLimits(lines: MergedLine[]): AppError | null {
  if (lines.length > limits.linesPerOrder) {
    return new AppError('limit_exceeded', `An order may name at most ${limits.linesPerOrder} SKUs`, {
      errors: [{ path: '/lines', message: `at most ${limits.linesPerOrder} distinct SKUs` }],
    });
  }
  const tooMany = lines.filter((l) => l.quantity > limits.quantityPerLine);
  if (tooMany.length > 0) {
    return new AppError('limit_exceeded', `At most ${limits.quantityPerLine} units of one SKU per order`, {
      errors: tooMany.map((l) => ({
        path: `/lines/${l.firstIndex}/quantity`,
        message: `at most ${limits.quantityPerLine}`,
      })),
    });
  }
  return null;
}

/**
 * The order's total in minor units. Within the limits every product and partial sum is an integer
 * of at most maxOrderTotal < 2^53, hence exact (src/limits.ts). A price stored before those bounds could
 * take a total past them; rounding is monotonic, so such a total still compares as too large.
 */
export function orderTotal(
  lines: { sku: string; quantity: number }[],
  prices: ReadonlyMap<string, Pick<PricedSku, 'price_amount'>>,
): number {
  return lines.reduce((sum, l) => sum + prices.get(l.sku)!.price_amount * l.quantity, 0);
}

/** A line an order could not have: what it asked, what was left for it, and where it is in the request. */
export interface ShortLine {
  sku: string;
  quantity: number;
  available: number;
  index: number;
}

/**
 * The stock allocation of a batch: the orders take what they need in arrival order, all of an
 * order's lines or none; an order that does not fit takes nothing and leaves what it asked for to
 * the orders after it. available (per SKU) is what the locked rows had; it is not changed.
 */
export function allocateStock<T extends { lines: MergedLine[] }>(
  orders: T[],
  available: ReadonlyMap<string, number>,
): { placed: T[]; refused: { order: T; short: ShortLine[] }[] } {
  const left = new Map(available);
  const placed: T[] = [];
  const refused: { order: T; short: ShortLine[] }[] = [];
  for (const order of orders) {
    const short = order.lines.filter((l) => (left.get(l.sku) ?? 0) < l.quantity);
    if (short.length > 0) {
      refused.push({
        order,
        short: short.map((l) => ({
          sku: l.sku,
          quantity: l.quantity,
          available: left.get(l.sku) ?? 0,
          index: l.firstIndex,
        })),
      });
      continue;
    }
    for (const l of order.lines) left.set(l.sku, left.get(l.sku)! - l.quantity);
    placed.push(order);
  }
  return { placed, refused };
}

/** The order against the catalog: unknown SKUs, mixed currencies or a total beyond bounds refuse it (stock is step 3 of placeOrders). */
function checkAgainstCatalog(lines: MergedLine[], prices: Map<string, PricedSku>): AppError | null {
  const unknown: FieldError[] = lines
    .filter((l) => !prices.get(l.sku)?.active)
    .map((l) => ({ path: `/lines/${l.firstIndex}/sku`, message: `unknown SKU ${l.sku}` }));
  if (unknown.length > 0)
    return new AppError('unknown_sku', unknown.map((u) => u.message).join('; '), { errors: unknown });
  const currencies = new Set(lines.map((l) => prices.get(l.sku)!.currency));
  if (currencies.size > 1)
    return new AppError(
      'currency_mismatch',
      `The lines are priced in ${[...currencies].sort().join(' and ')}; an order has one currency`,
    );
  if (orderTotal(lines, prices) > maxOrderTotal)
    return new AppError('limit_exceeded', `An order may total at most ${maxOrderTotal} minor units`);
  return null;
}

/**
 * Places a batch of orders in the caller's transaction and answers each request. The requests
 * must name distinct (principal, key) pairs. Business refusals are answers (stored under their
 * keys); anything thrown is a fault, and the transaction must roll back.
 */
export async function placeOrders(
  tx: Tx,
  requests: OrderRequest[],
  chargeRetryBudget?: ChargeRetryBudget,
): Promise<Answer[]> {
  const answers: Answer[] = new Array(requests.length);
  const stored: { request: KeyedRequest; outcome: Outcome }[] = [];
  const refuse = (i: number, err: AppError) => {
    answers[i] = { outcome: failureOutcome(err), replayed: false };
    stored.push({ request: requests[i]!.keyed, outcome: answers[i].outcome });
  };

  // 1. Keys: a key already used answers what it answered then (or why it cannot).
  const claimed = await claimKeys(
    tx,
    requests.map((r) => r.keyed),
  );
  const taken = requests.flatMap((r, i) => (claimed[i] ? [] : [i]));
  (
    await priorOutcomes(
      tx,
      taken.map((i) => requests[i]!.keyed),
    )
  ).forEach((prior, n) => {
    answers[taken[n]!] =
      prior instanceof AppError
        ? { outcome: failureOutcome(prior), replayed: false }
        : { outcome: prior, replayed: true };
  });

  // 2. Each new order against the limits and the catalog (prices are frozen on its lines).
  let pending = requests.flatMap((r, i) => (claimed[i] ? [{ i, request: r, lines: mergeLines(r.input.lines) }] : []));
  pending = pending.filter((p) => {
    const refused = checkLimits(p.lines);
    if (refused) refuse(p.i, refused);
    return !refused;
  });
  // The same statement locks the stock rows that have something available: they stay locked from
  // here to the commit (one round trip less than reading, then locking).
  const prices = new Map(
    (pending.length
      ? await lockPricedStock(tx, [...new Set(pending.flatMap((p) => p.lines.map((l) => l.sku)))])
      : []
    ).map((p) => [p.sku, p]),
  );
  pending = pending.filter((p) => {
    const refused = checkAgainstCatalog(p.lines, prices);
    if (refused) refuse(p.i, refused);
    return !refused;
  });

  // 3. Stock, as locked above: the orders take what they need in arrival order, all of an order's
  // lines or none.
  const allocation = allocateStock(pending, new Map([...prices.values()].map((p) => [p.sku, p.available])));
  for (const { order, short } of allocation.refused) refuse(order.i, outOfStock(short));
  pending = allocation.placed;

  // 4. The writes, one statement each for the whole batch: orders and lines, payments and their
  // charge jobs, events, reservations; then every answer under its key.
  const placed = await repo.insertOrders(
    tx,
    pending.map((p) => {
      const lines = p.lines.map((l) => ({
        sku: l.sku,
        quantity: l.quantity,
        unitAmount: prices.get(l.sku)!.price_amount,
      }));
      const total = orderTotal(p.lines, prices);
      // Checked above; asserted where the sum is made, so a change of the bounds cannot round silently.
      if (!Number.isSafeInteger(total) || total > maxOrderTotal)
        throw new Error(`order total ${total} is beyond ${maxOrderTotal}`);
      return {
        id: newId('ord'),
        customerId: p.request.principal.userId,
        currency: prices.get(p.lines[0]!.sku)!.currency,
        total,
        paymentToken: p.request.input.payment.token,
        lines,
      };
    }),
  );
  await requestCharges(
    tx,
    placed.map((p, n) => ({ ...p.order, traceparent: pending[n]!.request.traceparent })),
    chargeRetryBudget,
  );
  await publishOrderEvents(tx, 'order.created', placed);
  await reserveForOrders(
    tx,
    placed.flatMap((p) => p.lines.map((l) => ({ orderId: p.order.id, sku: l.sku, quantity: l.quantity }))),
  );
  placed.forEach((p, n) => {
    const i = pending[n]!.i;
    answers[i] = { outcome: { status: 201, body: orderView(p.order, p.lines) }, replayed: false };
    stored.push({ request: requests[i]!.keyed, outcome: answers[i].outcome });
  });
  await storeOutcomes(tx, stored);
  return answers;
}

interface Waiting {
  request: OrderRequest;
  resolve: (answer: Answer) => void;
  reject: (err: unknown) => void;
}

export interface OrderPlacer {
  /** Places the order (with whatever else is waiting) and answers it. */
  place(request: OrderRequest): Promise<Answer>;
}

/**
 * The batcher in front of placeOrders. concurrency: batches running at once (each holds a pooled
 * connection); maxBatch: orders per transaction. onPlaced runs after a commit that placed orders
 * (to wake the payment workers).
 */
export function orderPlacer(
  db: Db,
  options: { concurrency: number; maxBatch: number; onPlaced?: () => void; chargeRetryBudget?: ChargeRetryBudget },
): OrderPlacer {
  const waiting: Waiting[] = [];
  let running = 0;

  // Up to maxBatch waiting requests in arrival order; a second request with a key already in the
  // batch waits for the next one, where it finds the first one's stored answer.
  const takeBatch = (): Waiting[] => {
    const batch: Waiting[] = [];
    const keys = new Set<string>();
    for (let i = 0; i < waiting.length && batch.length < options.maxBatch;) {
      const w = waiting[i]!;
      const key = `${w.request.keyed.principalId}\0${w.request.keyed.key}`;
      if (keys.has(key)) {
        i++;
        continue;
      }
      keys.add(key);
      batch.push(w);
      waiting.splice(i, 1);
    }
    return batch;
  };

  const run = async (batch: Waiting[]): Promise<void> => {
    let answers: Answer[];
    try {
      // One span for the shared transaction (tracing on): a child of the first request, linked to the others.
      answers = await inBatchSpan(
        'place orders',
        batch.map((w) => w.request.traceparent),
        () =>
          db.transaction((tx) =>
            placeOrders(
              tx,
              batch.map((w) => w.request),
              options.chargeRetryBudget,
            ),
          ),
      );
    } catch (err) {
      if (batch.length === 1) return batch[0]!.reject(err);
      await Promise.all(batch.map((w) => run([w])));
      return;
    }
    batch.forEach((w, i) => w.resolve(answers[i]!));
    if (answers.some((a) => a.outcome.status === 201 && !a.replayed)) options.onPlaced?.();
  };

  const pump = () => {
    while (running < options.concurrency && waiting.length > 0) {
      const batch = takeBatch();
      running++;
      // run answers or rejects each waiting request itself and never rejects.
      void run(batch).finally(() => {
        running--;
        pump();
      });
    }
  };

  return {
    place: (request) =>
      new Promise<Answer>((resolve, reject) => {
        waiting.push({ request, resolve, reject });
        pump();
      }),
  };
}
