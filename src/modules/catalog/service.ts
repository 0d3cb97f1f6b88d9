// The catalog: products with variants, read by anyone, written by staff.
import type { Db, Queryable } from '../../platform/db.ts';
import { newId } from '../../platform/ids.ts';
import { AppError } from '../../errors.ts';
import type { Principal } from '../../platform/auth.ts';
import { staffOrAbove } from '../../platform/auth.ts';
import type { Tx } from '../../platform/db.ts';
import * as repo from './repo.ts';
import { createStock } from './inventory.ts';
import type { Product } from './schemas.ts';

export interface NewProduct {
  name: string;
  description?: string;
  active?: boolean;
  variants: { sku: string; name?: string; price: { amount: number; currency: string }; stock: number }[];
}

async function withVariants(db: Queryable, products: repo.ProductRow[]): Promise<Product[]> {
  const variants = await repo.variantsOf(
    db,
    products.map((p) => p.id),
  );
  return products.map((p) => ({
    id: p.id,
    name: p.name,
    description: p.description,
    active: p.active,
    variants: variants
      .filter((v) => v.product_id === p.id)
      .map((v) => ({
        id: v.id,
        sku: v.sku,
        name: v.name,
        price: { amount: v.price_amount, currency: v.currency },
        available: v.on_hand - v.reserved,
      })),
    createdAt: p.created_at.toISOString(),
    updatedAt: p.updated_at.toISOString(),
  }));
}

function skuTaken(err: unknown): boolean {
  const e = err as { code?: string; constraint?: string };
  return e?.code === '23505' && e.constraint === 'variants_sku_key';
}

export async function createProduct(tx: Tx, principal: Principal, input: NewProduct): Promise<Product> {
  const seen = new Set<string>();
  input.variants.forEach((v, i) => {
    if (seen.has(v.sku))
      throw new AppError('sku_taken', `SKU ${v.sku} appears twice`, {
        errors: [{ path: `/variants/${i}/sku`, message: 'appears twice' }],
      });
    seen.add(v.sku);
  });
  const product = await repo.insertProduct(tx, {
    id: newId('prd'),
    name: input.name,
    description: input.description ?? '',
    active: input.active ?? true,
  });
  try {
    await repo.insertVariants(
      tx,
      product.id,
      input.variants.map((v) => ({
        id: newId('var'),
        sku: v.sku,
        name: v.name ?? '',
        amount: v.price.amount,
        currency: v.price.currency,
      })),
    );
  } catch (err) {
    if (skuTaken(err)) {
      const taken = /\(sku\)=\(([^)]*)\)/.exec((err as { detail?: string }).detail ?? '')?.[1];
      throw new AppError('sku_taken', taken ? `SKU ${taken} exists` : 'A SKU of this product exists');
    }
    throw err;
  }
  await createStock(
    tx,
    input.variants.map((v) => ({ sku: v.sku, quantity: v.stock })),
    principal.userId,
  );
  return (await withVariants(tx, [product]))[0]!;
}

export async function listProducts(
  db: Db,
  principal: Principal | null,
  opts: { after: string | null; limit: number; includeInactive: boolean },
) {
  const includeInactive = opts.includeInactive && principal !== null && staffOrAbove(principal.role);
  const rows = await repo.listProducts(db, { ...opts, includeInactive });
  const page = rows.slice(0, opts.limit);
  return { products: await withVariants(db, page), more: rows.length > opts.limit };
}

export async function getProduct(db: Queryable, principal: Principal | null, id: string): Promise<Product> {
  const row = await repo.findProduct(db, id);
  // An inactive product is hidden from customers exactly as a missing one.
  if (!row || (!row.active && !(principal && staffOrAbove(principal.role))))
    throw new AppError('not_found', 'No such product');
  return (await withVariants(db, [row]))[0]!;
}

export async function updateProduct(
  tx: Tx,
  id: string,
  changes: {
    name?: string;
    description?: string;
    active?: boolean;
    variants?: { sku: string; price: { amount: number; currency: string } }[];
  },
): Promise<Product> {
  const row = await repo.updateProduct(tx, id, changes);
  if (!row) throw new AppError('not_found', 'No such product');
  if (changes.variants?.length) {
    const changed = new Set(
      await repo.updatePrices(
        tx,
        id,
        changes.variants.map((v) => ({ sku: v.sku, ...v.price })),
      ),
    );
    const foreign = changes.variants.findIndex((v) => !changed.has(v.sku));
    if (foreign >= 0) {
      throw new AppError('unknown_sku', `SKU ${changes.variants[foreign]!.sku} is not a variant of this product`, {
        errors: [{ path: `/variants/${foreign}/sku`, message: 'not a variant of this product' }],
      });
    }
  }
  return (await withVariants(tx, [row]))[0]!;
}
