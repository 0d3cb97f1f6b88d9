// Stock: levels per SKU and the movements that explain them. Every function takes the caller's
// transaction, so a reservation commits or rolls back with the order that made it.
//
// Rows are always locked in SKU order: two orders crossing the same SKUs (A,B) and (B,A) then wait
// for each other instead of deadlocking. The CHECK constraints of stock_levels stay the last word.
import type { Queryable, Tx } from '../../platform/db.ts';
import type { Refine, StockLevelsRow, StockMovementsRow } from '../../db/rows.ts';
import { AppError } from '../../errors.ts';
import { maxOnHand, type StockLevel } from './schemas.ts';

export interface StockRequest {
  sku: string;
  quantity: number;
}

type LevelRow = StockLevelsRow;

export function levelView(row: LevelRow): StockLevel {
  return { sku: row.sku, onHand: row.on_hand, reserved: row.reserved, available: row.on_hand - row.reserved };
}

/**
 * Row locks in SKU order, whatever the order of the lines, before any UPDATE whose join order
 * PostgreSQL chooses itself: a CTE for the statement that updates, joined by it. However the
 * planner joins it, the first read of the CTE locks its rows in its ORDER BY (a later read only
 * finds them locked already); being in the same statement saves a round trip. $1 is the SKUs.
 */
const lockedInSkuOrder =
  'locked AS MATERIALIZED (SELECT sku FROM stock_levels WHERE sku = ANY($1::text[]) ORDER BY sku FOR UPDATE)';

/** Stock that arrives or leaves by hand, not by an order: the initial stock and adjustments. */
async function recordMovements(
  tx: Tx,
  kind: 'initial' | 'adjustment',
  rows: { sku: string; onHand: number }[],
  reason: string,
  actorId: string,
): Promise<void> {
  await tx.query(
    `INSERT INTO stock_movements (sku, kind, on_hand_delta, reserved_delta, reason, actor_id)
     SELECT sku, $2, on_hand_delta, 0, $4, $5 FROM unnest($1::text[], $3::int[]) AS m(sku, on_hand_delta)`,
    [rows.map((r) => r.sku), kind, rows.map((r) => r.onHand), reason, actorId],
  );
}

export async function createStock(tx: Tx, levels: StockRequest[], actorId: string): Promise<void> {
  await tx.query('INSERT INTO stock_levels (sku, on_hand) SELECT * FROM unnest($1::text[], $2::int[])', [
    levels.map((l) => l.sku),
    levels.map((l) => l.quantity),
  ]);
  await recordMovements(
    tx,
    'initial',
    levels.map((l) => ({ sku: l.sku, onHand: l.quantity })),
    'initial stock',
    actorId,
  );
}

/**
 * The out_of_stock error for the lines that are short, with each one's path in the request.
 * `available` is never negative: stock_levels' CHECK keeps reserved within on_hand.
 */
export function outOfStock(short: { sku: string; quantity: number; available: number; index: number }[]): AppError {
  const first = short[0]!;
  return new AppError(
    'out_of_stock',
    `SKU ${first.sku} has ${first.available} available, ${first.quantity} requested`,
    {
      errors: short.map((s) => ({ path: `/lines/${s.index}/quantity`, message: `only ${s.available} available` })),
    },
  );
}

/** A SKU as a batch of orders is decided against it: its price, whether its product is active, what is available. */
export interface PricedSku {
  sku: string;
  price_amount: number;
  currency: string;
  active: boolean;
  available: number;
}

/**
 * The prices of the SKUs that exist, whether their product is active, and their stock, for a
 * batch of orders to be decided (place.ts): one statement, which also locks the stock rows with
 * something available, in SKU order, until the transaction ends. `available` is read under that
 * lock. A row with nothing available is not locked and answers 0 (a flash sale's hot SKU, once
 * sold out, so hopeless orders do not queue for its row), as does one that a transaction this one
 * waited for left with nothing: only what is locked can be reserved (reserveForOrders).
 */
export function lockPricedStock(tx: Tx, skus: string[]): Promise<PricedSku[]> {
  return tx.query<PricedSku>(
    `WITH locked AS MATERIALIZED (
       SELECT sku, on_hand - reserved AS available FROM stock_levels
        WHERE sku = ANY($1::text[]) AND on_hand > reserved ORDER BY sku FOR UPDATE)
     SELECT v.sku, v.price_amount, v.currency, p.active, coalesce(l.available, 0) AS available
       FROM variants v JOIN products p ON p.id = v.product_id JOIN stock_levels s ON s.sku = v.sku
       LEFT JOIN locked l ON l.sku = v.sku
      WHERE v.sku = ANY($1::text[])`,
    [skus],
  );
}

/**
 * Reserves the lines of several orders in one statement, with one movement per order and SKU.
 * The rows must be locked (lockPricedStock) and the lines known to fit: the conditional UPDATE is the
 * last word, and a line that no longer fits is a fault that rolls everything back.
 */
export async function reserveForOrders(
  tx: Tx,
  lines: { orderId: string; sku: string; quantity: number }[],
): Promise<void> {
  if (lines.length === 0) return;
  const [row] = await tx.query<{ skus: number; reserved: number }>(
    `WITH m AS (SELECT * FROM unnest($1::text[], $2::text[], $3::int[]) AS m(order_id, sku, quantity)),
     wanted AS (SELECT sku, sum(quantity)::int AS quantity FROM m GROUP BY sku),
     reserved AS (
       UPDATE stock_levels s SET reserved = s.reserved + w.quantity FROM wanted w
        WHERE s.sku = w.sku AND s.on_hand - s.reserved >= w.quantity
       RETURNING s.sku),
     moved AS (
       INSERT INTO stock_movements (sku, kind, on_hand_delta, reserved_delta, order_id)
       SELECT sku, 'reservation', 0, quantity, order_id FROM m)
     SELECT (SELECT count(*) FROM wanted)::int AS skus, (SELECT count(*) FROM reserved)::int AS reserved`,
    [lines.map((l) => l.orderId), lines.map((l) => l.sku), lines.map((l) => l.quantity)],
  );
  if (row!.reserved !== row!.skus)
    throw new Error(
      `reserveForOrders: ${row!.skus - row!.reserved} SKUs no longer had the stock their locked rows showed`,
    );
}

/**
 * Settles the reservations of several orders at once (a batch of payment outcomes): each line is
 * sold (its units leave on-hand stock) or released. One statement, so the rows are locked once, in
 * SKU order, for sales and releases together (two statements could each lock a part and wait for
 * another batch holding the rest); each SKU is updated once by its totals, with one movement per
 * order and SKU.
 */
export async function settleReservations(
  tx: Tx,
  lines: { orderId: string; sku: string; quantity: number; kind: 'sale' | 'release' }[],
): Promise<void> {
  if (lines.length === 0) return;
  await tx.query(
    `WITH ${lockedInSkuOrder},
     m AS (
       SELECT order_id, sku, quantity, kind, CASE kind WHEN 'sale' THEN -quantity ELSE 0 END AS on_hand_delta
         FROM unnest($2::text[], $1::text[], $3::int[], $4::text[]) AS m(order_id, sku, quantity, kind)),
     total AS (SELECT sku, sum(quantity)::int AS reserved, sum(on_hand_delta)::int AS on_hand FROM m GROUP BY sku),
     settled AS (
       UPDATE stock_levels s SET reserved = s.reserved - t.reserved, on_hand = s.on_hand + t.on_hand
         FROM total t JOIN locked l ON l.sku = t.sku
        WHERE s.sku = t.sku)
     INSERT INTO stock_movements (sku, kind, on_hand_delta, reserved_delta, order_id)
     SELECT sku, kind, on_hand_delta, -quantity, order_id FROM m`,
    [lines.map((l) => l.sku), lines.map((l) => l.orderId), lines.map((l) => l.quantity), lines.map((l) => l.kind)],
  );
}

/** Gives an order's reservation back (cancelled, or payment failed). */
export function releaseReservation(tx: Tx, orderId: string, lines: StockRequest[]): Promise<void> {
  return settleReservations(
    tx,
    lines.map((l) => ({ orderId, sku: l.sku, quantity: l.quantity, kind: 'release' })),
  );
}

/**
 * Puts the units of a cancelled paid order back on hand: the sale is reversed, not forgotten. One
 * statement, its rows locked in SKU order like settleReservations'.
 */
export async function returnSoldStock(tx: Tx, orderId: string, lines: StockRequest[]): Promise<void> {
  await tx.query(
    `WITH ${lockedInSkuOrder},
     r AS (SELECT * FROM unnest($1::text[], $2::int[]) AS r(sku, quantity)),
     returned AS (
       UPDATE stock_levels s SET on_hand = s.on_hand + r.quantity
         FROM r JOIN locked l ON l.sku = r.sku
        WHERE s.sku = r.sku)
     INSERT INTO stock_movements (sku, kind, on_hand_delta, reserved_delta, order_id, reason)
     SELECT sku, 'sale', quantity, 0, $3, 'sale reversed: order cancelled' FROM r`,
    [lines.map((l) => l.sku), lines.map((l) => l.quantity), orderId],
  );
}

export async function adjustStock(
  tx: Tx,
  sku: string,
  delta: number,
  reason: string,
  actorId: string,
): Promise<StockLevel> {
  // A conditional update: the rules (onHand never below reserved, nor above maxOnHand) are checked
  // by the row it changes. The sum is made in bigint, so a large delta is refused, not overflowed.
  const [row] = await tx.query<LevelRow>(
    `UPDATE stock_levels SET on_hand = on_hand + $2::int
      WHERE sku = $1 AND on_hand::bigint + $2::int >= reserved AND ($2::int < 0 OR on_hand::bigint + $2::int <= $3)
     RETURNING sku, on_hand, reserved`,
    [sku, delta, maxOnHand],
  );
  if (!row) {
    const current = await getStockLevel(tx, sku);
    if (!current) throw new AppError('not_found', `No SKU ${sku}`);
    if (delta > 0) {
      throw new AppError('limit_exceeded', `SKU ${sku} has ${current.onHand} on hand; at most ${maxOnHand} may be`, {
        errors: [{ path: '/delta', message: `at most ${maxOnHand - current.onHand} allowed` }],
      });
    }
    throw new AppError(
      'insufficient_stock',
      `SKU ${sku} has ${current.onHand} on hand and ${current.reserved} reserved; cannot remove ${-delta}`,
      {
        errors: [{ path: '/delta', message: `at least ${current.reserved - current.onHand} allowed` }],
      },
    );
  }
  await recordMovements(tx, 'adjustment', [{ sku, onHand: delta }], reason, actorId);
  return levelView(row);
}

export async function getStockLevel(db: Queryable, sku: string): Promise<StockLevel | undefined> {
  const [row] = await db.query<LevelRow>('SELECT sku, on_hand, reserved FROM stock_levels WHERE sku = $1', [sku]);
  return row && levelView(row);
}

export type MovementRow = Refine<
  Pick<StockMovementsRow, 'id' | 'kind' | 'on_hand_delta' | 'reserved_delta' | 'order_id' | 'reason' | 'created_at'>,
  { kind: 'initial' | 'adjustment' | 'reservation' | 'release' | 'sale' }
>;

export function listMovements(
  db: Queryable,
  sku: string,
  beforeId: number | null,
  limit: number,
): Promise<MovementRow[]> {
  return db.query<MovementRow>(
    `SELECT id, kind, on_hand_delta, reserved_delta, order_id, reason, created_at FROM stock_movements
      WHERE sku = $1 AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3`,
    [sku, beforeId, limit + 1],
  );
}

/** An order's movements, oldest first: its reservation and what settled it. */
export function movementsOfOrder(
  db: Queryable,
  orderId: string,
): Promise<(MovementRow & Pick<StockMovementsRow, 'sku'>)[]> {
  return db.query<MovementRow & Pick<StockMovementsRow, 'sku'>>(
    'SELECT id, sku, kind, on_hand_delta, reserved_delta, order_id, reason, created_at FROM stock_movements WHERE order_id = $1 ORDER BY id',
    [orderId],
  );
}

/** A page of stock levels in SKU order, after the SKU `after` (the primary key's order). */
export async function listStockLevels(
  db: Queryable,
  opts: { after: string | null; limit: number },
): Promise<LevelRow[]> {
  return db.query<LevelRow>(
    'SELECT sku, on_hand, reserved FROM stock_levels WHERE ($1::text IS NULL OR sku > $1) ORDER BY sku LIMIT $2',
    [opts.after, opts.limit + 1],
  );
}

/** SKUs whose level differs from what its movements add up to (empty when the books agree). */
export async function stockDiscrepancies(
  db: Queryable,
): Promise<{ sku: string; on_hand: number; reserved: number; moved_on_hand: number; moved_reserved: number }[]> {
  return db.query(
    `SELECT s.sku, s.on_hand, s.reserved, coalesce(m.on_hand, 0)::bigint AS moved_on_hand, coalesce(m.reserved, 0)::bigint AS moved_reserved
       FROM stock_levels s
       LEFT JOIN (SELECT sku, sum(on_hand_delta) AS on_hand, sum(reserved_delta) AS reserved FROM stock_movements GROUP BY sku) m USING (sku)
      WHERE s.on_hand <> coalesce(m.on_hand, 0) OR s.reserved <> coalesce(m.reserved, 0)`,
  );
}
