// SQL of products and variants.
import type { Queryable, Tx } from '../../platform/db.ts';
import type { ProductsRow, StockLevelsRow, VariantsRow } from '../../db/rows.ts';

export type ProductRow = ProductsRow;
/** A variant with its stock level (variants joined to stock_levels). */
export type VariantRow = Pick<VariantsRow, 'id' | 'product_id' | 'sku' | 'name' | 'price_amount' | 'currency'> &
  Pick<StockLevelsRow, 'on_hand' | 'reserved'>;

export async function insertProduct(
  tx: Tx,
  p: { id: string; name: string; description: string; active: boolean },
): Promise<ProductRow> {
  const [row] = await tx.query<ProductRow>(
    'INSERT INTO products (id, name, description, active) VALUES ($1, $2, $3, $4) RETURNING *',
    [p.id, p.name, p.description, p.active],
  );
  return row!;
}

export async function insertVariants(
  tx: Tx,
  productId: string,
  variants: { id: string; sku: string; name: string; amount: number; currency: string }[],
): Promise<void> {
  await tx.query(
    `INSERT INTO variants (id, product_id, sku, name, price_amount, currency, position)
     SELECT id, $1, sku, name, amount, currency, position
       FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[]) WITH ORDINALITY AS v(id, sku, name, amount, currency, position)`,
    [
      productId,
      variants.map((v) => v.id),
      variants.map((v) => v.sku),
      variants.map((v) => v.name),
      variants.map((v) => v.amount),
      variants.map((v) => v.currency),
    ],
  );
}

export async function findProduct(db: Queryable, id: string): Promise<ProductRow | undefined> {
  const [row] = await db.query<ProductRow>('SELECT * FROM products WHERE id = $1', [id]);
  return row;
}

export function listProducts(
  db: Queryable,
  opts: { after: string | null; limit: number; includeInactive: boolean },
): Promise<ProductRow[]> {
  return db.query<ProductRow>(
    `SELECT * FROM products WHERE ($1::text IS NULL OR id < $1) AND (active OR $3) ORDER BY id DESC LIMIT $2`,
    [opts.after, opts.limit + 1, opts.includeInactive],
  );
}

export function variantsOf(db: Queryable, productIds: string[]): Promise<VariantRow[]> {
  return db.query<VariantRow>(
    `SELECT v.id, v.product_id, v.sku, v.name, v.price_amount, v.currency, s.on_hand, s.reserved
       FROM variants v JOIN stock_levels s USING (sku)
      WHERE v.product_id = ANY($1::text[]) ORDER BY v.product_id, v.position`,
    [productIds],
  );
}

export async function updateProduct(
  tx: Tx,
  id: string,
  changes: { name?: string; description?: string; active?: boolean },
): Promise<ProductRow | undefined> {
  const [row] = await tx.query<ProductRow>(
    `UPDATE products SET name = coalesce($2, name), description = coalesce($3, description), active = coalesce($4, active), updated_at = now()
      WHERE id = $1 RETURNING *`,
    [id, changes.name ?? null, changes.description ?? null, changes.active ?? null],
  );
  return row;
}

/** Answers the SKUs it changed; a SKU of another product is not touched. */
export async function updatePrices(
  tx: Tx,
  productId: string,
  prices: { sku: string; amount: number; currency: string }[],
): Promise<string[]> {
  const rows = await tx.query<Pick<VariantsRow, 'sku'>>(
    `UPDATE variants v SET price_amount = p.amount, currency = p.currency, updated_at = now()
       FROM unnest($2::text[], $3::bigint[], $4::text[]) AS p(sku, amount, currency)
      WHERE v.sku = p.sku AND v.product_id = $1 RETURNING v.sku`,
    [productId, prices.map((p) => p.sku), prices.map((p) => p.amount), prices.map((p) => p.currency)],
  );
  return rows.map((r) => r.sku);
}
