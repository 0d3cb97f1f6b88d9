// The bench's shop: a catalog of many SKUs plus one hot SKU, and one customer (with a live session)
// per virtual client. Written in bulk through SQL when the bench owns the database (seconds
// instead of minutes of password hashing), or through the API when it only has a URL.
//
// The same rows seed the pgbench database, so its script can name them: customer i is
// usr_bench_<i> with the session token ers_bench_<i>_<salt>, SKU i is B<i, 5 digits>.
import { createHash } from 'node:crypto';
import type { Queryable } from '../../src/platform/db.ts';
import { hashPassword } from '../../src/modules/accounts/passwords.ts';
import { httpClient, jsonOf } from './http.ts';

export interface SeedOptions {
  customers: number;
  skus: number;
  /** Units on hand of each ordinary SKU. */
  stock: number;
  /** Units on hand of the hot SKU (the flash sale's). */
  hotStock: number;
  /** Makes the session tokens of this run unguessable from the previous one's. */
  salt: string;
}

export interface Customer {
  userId: string;
  token: string;
}
export interface Seeded {
  customers: Customer[];
  skus: string[];
  hotSku: string;
  productIds: string[];
}

export const hotSku = 'HOT';
export const skuName = (i: number): string => `B${String(i).padStart(5, '0')}`;
export const customerId = (i: number): string => `usr_bench_${i}`;
export const sessionToken = (i: number, salt: string): string => `ers_bench_${i}_${salt}`;
export const priceOf = (i: number): number => 1000 + (i % 20) * 50;

const sha256hex = (s: string) => createHash('sha256').update(s).digest('hex');

/** Inserts the shop straight into a migrated database (PostgreSQL or PGlite). */
export async function seedBySql(db: Queryable, o: SeedOptions): Promise<Seeded> {
  const ids = Array.from({ length: o.customers }, (_, i) => i);
  await db.query(
    `INSERT INTO users (id, email, name, role, password_hash)
     SELECT id, email, name, 'customer', '!seeded-by-bench: no password logs in' FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, email, name)`,
    [ids.map(customerId), ids.map((i) => `bench-${i}@bench.invalid`), ids.map((i) => `Bench buyer ${i}`)],
  );
  await db.query(
    `INSERT INTO sessions (id, user_id, token_hash, expires_at)
     SELECT id, user_id, decode(hash, 'hex'), now() + interval '7 days' FROM unnest($1::text[], $2::text[], $3::text[]) AS s(id, user_id, hash)`,
    [ids.map((i) => `ses_bench_${i}`), ids.map(customerId), ids.map((i) => sha256hex(sessionToken(i, o.salt)))],
  );

  const skuIds = Array.from({ length: o.skus }, (_, i) => i + 1);
  const productIds = Array.from({ length: Math.ceil(o.skus / 100) }, (_, k) => `prd_bench_${k}`);
  await db.query(`INSERT INTO products (id, name) SELECT id, 'Bench product ' || id FROM unnest($1::text[]) AS p(id)`, [
    [...productIds, 'prd_bench_hot'],
  ]);
  const variants = [
    ...skuIds.map((i) => ({
      id: `var_bench_${i}`,
      product: productIds[Math.floor((i - 1) / 100)]!,
      sku: skuName(i),
      price: priceOf(i),
      position: (i - 1) % 100,
      stock: o.stock,
    })),
    { id: 'var_bench_hot', product: 'prd_bench_hot', sku: hotSku, price: 2500, position: 0, stock: o.hotStock },
  ];
  await db.query(
    `INSERT INTO variants (id, product_id, sku, price_amount, currency, position)
     SELECT id, product_id, sku, price, 'EUR', position FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::int[]) AS v(id, product_id, sku, price, position)`,
    [
      variants.map((v) => v.id),
      variants.map((v) => v.product),
      variants.map((v) => v.sku),
      variants.map((v) => v.price),
      variants.map((v) => v.position),
    ],
  );
  await db.query('INSERT INTO stock_levels (sku, on_hand) SELECT * FROM unnest($1::text[], $2::int[])', [
    variants.map((v) => v.sku),
    variants.map((v) => v.stock),
  ]);
  await db.query(
    `INSERT INTO stock_movements (sku, kind, on_hand_delta, reserved_delta, reason)
     SELECT sku, 'initial', on_hand, 0, 'initial stock (bench seed)' FROM unnest($1::text[], $2::int[]) AS m(sku, on_hand)`,
    [variants.map((v) => v.sku), variants.map((v) => v.stock)],
  );
  return {
    customers: ids.map((i) => ({ userId: customerId(i), token: sessionToken(i, o.salt) })),
    skus: skuIds.map(skuName),
    hotSku,
    productIds: [...productIds, 'prd_bench_hot'],
  };
}

/**
 * The admin account. `start` creates one only on a database without users, and the seed has put
 * customers there first, so the bench writes it the way ensureAdmin would.
 */
export async function seedAdmin(db: Queryable, email: string, password: string): Promise<void> {
  await db.query(
    `INSERT INTO users (id, email, name, role, password_hash) VALUES ('usr_bench_admin', $1, 'Bench administrator', 'admin', $2)`,
    [email, await hashPassword(password)],
  );
}

/**
 * Statistics for the seeded tables only. The tables that are still empty (orders, payments, ...)
 * are left unanalyzed on purpose: an ANALYZE of an empty table records "0 rows", and plans made
 * from that (foreign-key checks among them, cached per connection) scan sequentially once the
 * table has grown. Never analyzed, the planner assumes a few pages and probes the index.
 */
export async function analyzeSeeded(db: Queryable): Promise<void> {
  await db.query('ANALYZE users, sessions, products, variants, stock_levels, stock_movements');
}

/** Seeds through the API of a running Engine Room (for --url): slower, but needs no database access. */
export async function seedByApi(baseUrl: string, adminToken: string, o: SeedOptions, tag: string): Promise<Seeded> {
  const http = httpClient(baseUrl);
  try {
    const skus = Array.from({ length: o.skus }, (_, i) => `B${tag}-${i + 1}`);
    const hot = `HOT${tag}`;
    const productIds: string[] = [];
    const create = async (
      name: string,
      variants: { sku: string; price: { amount: number; currency: string }; stock: number }[],
    ) => {
      const reply = await http.request('POST', '/v1/products', { token: adminToken, body: { name, variants } });
      if (reply.status !== 201) throw new Error(`creating the bench catalog: ${reply.status} ${reply.body}`);
      productIds.push(jsonOf<{ id: string }>(reply)!.id);
    };
    for (let k = 0; k * 100 < skus.length; k++) {
      await create(
        `Bench ${tag} ${k}`,
        skus
          .slice(k * 100, k * 100 + 100)
          .map((sku, j) => ({ sku, price: { amount: priceOf(k * 100 + j + 1), currency: 'EUR' }, stock: o.stock })),
      );
    }
    await create(`Bench ${tag} hot`, [{ sku: hot, price: { amount: 2500, currency: 'EUR' }, stock: o.hotStock }]);
    const customers: Customer[] = [];
    for (let i = 0; i < o.customers; i++) {
      const reply = await http.request('POST', '/v1/auth/signup', {
        body: {
          email: `bench-${tag}-${i}@example.com`,
          password: `bench password ${tag} ${o.salt}`,
          name: `Bench buyer ${i}`,
        },
      });
      if (reply.status !== 201) throw new Error(`signing up bench customer ${i}: ${reply.status} ${reply.body}`);
      const body = jsonOf<{ token: string; user: { id: string } }>(reply)!;
      customers.push({ userId: body.user.id, token: body.token });
    }
    return { customers, skus, hotSku: hot, productIds };
  } finally {
    http.close();
  }
}

/** Logs the admin in and answers a session token. */
export async function adminLogin(baseUrl: string, email: string, password: string): Promise<string> {
  const http = httpClient(baseUrl);
  try {
    const reply = await http.request('POST', '/v1/auth/login', { body: { email, password } });
    if (reply.status !== 200) throw new Error(`admin login at ${baseUrl} failed: ${reply.status} ${reply.body}`);
    return jsonOf<{ token: string }>(reply)!.token;
  } finally {
    http.close();
  }
}
