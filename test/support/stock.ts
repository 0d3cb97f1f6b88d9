import assert from 'node:assert/strict';
import type { Queryable } from '../../src/platform/db.ts';
import { stockDiscrepancies } from '../../src/modules/catalog/inventory.ts';

/** Every stock level equals what its movement history adds up to, and none is negative. */
export async function assertStockExplained(db: Queryable): Promise<void> {
  assert.deepEqual(await stockDiscrepancies(db), [], 'stock levels differ from their movement history');
  const negative = await db.query(
    'SELECT sku FROM stock_levels WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand',
  );
  assert.deepEqual(negative, []);
}
