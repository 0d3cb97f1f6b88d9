// `engine-room seed --orders N --customers M`: a shop at size, to measure the console's lists
// against (bench/lists.ts, docs/PERFORMANCE.md). Unlike `seed --demo`, which goes through the API,
// this writes the rows directly, set-based (one statement per table per batch of orders, from
// arrays), because a hundred thousand orders through the API and the payment queue would take an
// hour. What it writes is what the API would have left behind, so the audit passes afterwards:
// every order has its lines, its payment and its status history; a paid or fulfilled one its
// sandbox charge and its ledger capture; every line its stock reservation and the sale or release
// that settled it, and the stock levels add up to the movements.
//
// Orders are spread over the past year, ids in creation order (ids sort by time: platform/ids.ts),
// and are paid (55%), fulfilled (30%), declined (8%) or cancelled before payment (7%); none is
// left pending, so nothing waits for the workers.
import { pino } from 'pino';
import type { Config } from './config.ts';
import { adminLines, openAndMigrate } from './server.ts';
import { loggerOptions } from './platform/log.ts';
import { firstIdAt, type IdPrefix } from './platform/ids.ts';
import type { Tx } from './platform/db.ts';
import { hashPassword } from './modules/accounts/passwords.ts';
import { ensureAdmin } from './modules/accounts/service.ts';

const bulkCustomerPassword = 'bulk seed password';

const day = 86_400_000;
const batchSize = 5_000;
const skuCount = 500;

function progress(line: string): void {
  process.stderr.write(`seed: ${line}\n`);
}

/** A small seeded generator, so that two runs with the same sizes make the same shapes. */
function randomFrom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const base32 = '0123456789abcdefghjkmnpqrstvwxyz';

/**
 * An id made at time t, in the past. Not newId: that one never goes back in time (its ids sort in
 * the order they are made, and the admin's was made now), and these must sort as their times do.
 */
function idAt(prefix: IdPrefix, t: number, random: () => number): string {
  let tail = '';
  for (let i = 0; i < 16; i++) tail += base32[Math.floor(random() * 32)];
  return firstIdAt(prefix, t).slice(0, -16) + tail;
}

type Status = 'paid' | 'fulfilled' | 'payment_failed' | 'cancelled';

function statusFor(r: number): Status {
  return r < 0.55 ? 'paid' : r < 0.85 ? 'fulfilled' : r < 0.93 ? 'payment_failed' : 'cancelled';
}

export async function seedBulk(
  config: Readonly<Config>,
  sizes: { orders: number; customers: number },
): Promise<number> {
  const log = pino(loggerOptions('warn'));
  const db = await openAndMigrate(config, log);
  const started = Date.now();
  try {
    const random = randomFrom(sizes.orders * 31 + sizes.customers);
    const tag = Date.now().toString(36);
    const now = Date.now();
    const since = now - 365 * day;

    const admin = await ensureAdmin(db, { email: config.adminEmail, password: config.adminPassword });
    if (admin) process.stderr.write(adminLines(admin).join('\n') + '\n');

    // Customers first, made "before" the orders (their ids come earlier), with one password hash.
    const hash = await hashPassword(bulkCustomerPassword);
    const customerIds: string[] = [];
    for (let from = 0; from < sizes.customers; from += 10_000) {
      const n = Math.min(10_000, sizes.customers - from);
      const ids = Array.from({ length: n }, (_, i) =>
        idAt('usr', since - day + Math.floor(((from + i) / sizes.customers) * day), random),
      );
      customerIds.push(...ids);
      await db.query(
        `INSERT INTO users (id, email, name, role, password_hash, created_at, updated_at)
         SELECT id, 'customer-' || $2 || '-' || (n + $3) || '@bulk.engine-room.local', 'Customer ' || (n + $3), 'customer', $4, $5::timestamptz, $5::timestamptz
           FROM unnest($1::text[]) WITH ORDINALITY AS u(id, n)`,
        [ids, tag, from, hash, new Date(since - day)],
      );
    }
    progress(
      `${sizes.customers} customers (emails customer-${tag}-N@bulk.engine-room.local, password "${bulkCustomerPassword}")`,
    );

    // The catalog: products of two variants each, a million units of every SKU.
    const skus = Array.from({ length: skuCount }, (_, i) =>
      `BULK-${tag}-${String(i + 1).padStart(3, '0')}`.toUpperCase(),
    );
    const prices = skus.map(() => 500 + Math.floor(random() * 95) * 100);
    await db.transaction(async (tx) => {
      const productIds = Array.from({ length: skuCount / 2 }, () => idAt('prd', since - day, random));
      await tx.query(
        `INSERT INTO products (id, name, description, created_at, updated_at)
         SELECT id, 'Bulk product ' || n, 'Made by engine-room seed --orders', $2::timestamptz, $2::timestamptz FROM unnest($1::text[]) WITH ORDINALITY AS p(id, n)`,
        [productIds, new Date(since - day)],
      );
      await tx.query(
        `INSERT INTO variants (id, product_id, sku, name, price_amount, currency, position)
         SELECT id, product_id, sku, CASE WHEN n % 2 = 1 THEN 'Small' ELSE 'Large' END, price, 'EUR', 2 - n % 2
           FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY AS v(id, product_id, sku, price, n)`,
        [
          skus.map(() => idAt('var', since - day, random)),
          skus.map((_, i) => productIds[Math.floor(i / 2)]),
          skus,
          prices,
        ],
      );
      await tx.query(`INSERT INTO stock_levels (sku, on_hand) SELECT sku, 1000000 FROM unnest($1::text[]) AS s(sku)`, [
        skus,
      ]);
      await tx.query(
        `INSERT INTO stock_movements (sku, kind, on_hand_delta, reserved_delta, reason, created_at)
         SELECT sku, 'initial', 1000000, 0, 'initial stock', $2::timestamptz FROM unnest($1::text[]) AS s(sku)`,
        [skus, new Date(since - day)],
      );
    });
    progress(`${skuCount / 2} products, ${skuCount} SKUs with stock`);

    // Order times, ascending, so that the ids made from them sort as the times do.
    const times = Array.from(
      { length: sizes.orders },
      () => since + Math.floor(random() * (now - 3_600_000 - since)),
    ).sort((a, b) => a - b);
    for (let from = 0; from < sizes.orders; from += batchSize) {
      const batch = times.slice(from, from + batchSize);
      await db.transaction((tx) => writeOrders(tx, batch, { customerIds, skus, prices, random, now }));
      const done = Math.min(sizes.orders, from + batchSize);
      progress(`${done} / ${sizes.orders} orders (${Math.round((Date.now() - started) / 1000)} s)`);
    }
    await db.query('ANALYZE');
    progress(`done in ${Math.round((Date.now() - started) / 1000)} s`);
    return 0;
  } finally {
    await db.close();
  }
}

async function writeOrders(
  tx: Tx,
  times: number[],
  shop: { customerIds: string[]; skus: string[]; prices: number[]; random: () => number; now: number },
): Promise<void> {
  const { random } = shop;
  const o = {
    id: [] as string[],
    customer: [] as string[],
    status: [] as Status[],
    total: [] as number[],
    at: [] as Date[],
    changed: [] as Date[],
  };
  const l = {
    order: [] as string[],
    no: [] as number[],
    sku: [] as string[],
    quantity: [] as number[],
    unit: [] as number[],
    at: [] as Date[],
    settle: [] as string[],
    settledAt: [] as Date[],
  };
  const p = {
    id: [] as string[],
    order: [] as string[],
    amount: [] as number[],
    status: [] as string[],
    ref: [] as (string | null)[],
    failure: [] as (string | null)[],
    at: [] as Date[],
    settledAt: [] as Date[],
    charged: [] as string[],
  };
  const h = { order: [] as string[], from: [] as (string | null)[], to: [] as string[], at: [] as Date[] };
  const txn = {
    id: [] as string[],
    order: [] as string[],
    payment: [] as string[],
    amount: [] as number[],
    at: [] as Date[],
  };

  for (const t of times) {
    const id = idAt('ord', t, random);
    const paymentId = idAt('pay', t, random);
    const status = statusFor(random());
    const created = new Date(t);
    const settledAt = new Date(Math.min(shop.now, t + (status === 'cancelled' ? 600_000 : 2_000)));
    const fulfilledAt = new Date(Math.min(shop.now, t + day));
    const lineCount = 1 + Math.floor(random() * 3);
    const chosen = new Set<number>();
    while (chosen.size < lineCount) chosen.add(Math.floor(random() * shop.skus.length));
    let total = 0;
    [...chosen]
      .sort((a, b) => a - b)
      .forEach((s, i) => {
        const quantity = 1 + Math.floor(random() * 3);
        total += quantity * shop.prices[s]!;
        l.order.push(id);
        l.no.push(i + 1);
        l.sku.push(shop.skus[s]!);
        l.quantity.push(quantity);
        l.unit.push(shop.prices[s]!);
        l.at.push(created);
        l.settle.push(status === 'paid' || status === 'fulfilled' ? 'sale' : 'release');
        l.settledAt.push(settledAt);
      });
    o.id.push(id);
    o.customer.push(shop.customerIds[Math.floor(random() * shop.customerIds.length)]!);
    o.status.push(status);
    o.total.push(total);
    o.at.push(created);
    o.changed.push(status === 'fulfilled' ? fulfilledAt : settledAt);

    const captured = status === 'paid' || status === 'fulfilled';
    p.id.push(paymentId);
    p.order.push(id);
    p.amount.push(total);
    p.at.push(created);
    p.settledAt.push(settledAt);
    p.status.push(captured ? 'succeeded' : 'failed');
    p.ref.push(status === 'cancelled' ? null : `sch_${idAt('ref', t, random).slice(4)}`);
    p.failure.push(
      status === 'payment_failed'
        ? 'card_declined'
        : status === 'cancelled'
          ? 'order cancelled before the charge'
          : null,
    );
    p.charged.push(captured ? 'succeeded' : status === 'payment_failed' ? 'declined' : 'none');
    if (captured) {
      txn.id.push(idAt('txn', t, random));
      txn.order.push(id);
      txn.payment.push(paymentId);
      txn.amount.push(total);
      txn.at.push(settledAt);
    }

    h.order.push(id);
    h.from.push(null);
    h.to.push('pending_payment');
    h.at.push(created);
    h.order.push(id);
    h.from.push('pending_payment');
    h.to.push(status === 'fulfilled' ? 'paid' : status);
    h.at.push(settledAt);
    if (status === 'fulfilled') {
      h.order.push(id);
      h.from.push('paid');
      h.to.push('fulfilled');
      h.at.push(fulfilledAt);
    }
  }

  await tx.query(
    `INSERT INTO orders (id, customer_id, status, currency, total_amount, payment_method, payment_token, created_at, updated_at)
     SELECT id, customer_id, status, 'EUR', total, 'card', CASE status WHEN 'payment_failed' THEN 'tok_declined' ELSE 'tok_ok' END, created_at, updated_at
       FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::timestamptz[], $6::timestamptz[]) AS o(id, customer_id, status, total, created_at, updated_at)`,
    [o.id, o.customer, o.status, o.total, o.at, o.changed],
  );
  await tx.query(
    `INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_amount, total_amount)
     SELECT order_id, line_no, sku, quantity, unit_amount, unit_amount * quantity
       FROM unnest($1::text[], $2::int[], $3::text[], $4::int[], $5::bigint[]) AS l(order_id, line_no, sku, quantity, unit_amount)`,
    [l.order, l.no, l.sku, l.quantity, l.unit],
  );
  await tx.query(
    `INSERT INTO order_status_changes (order_id, from_status, to_status, created_at)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])`,
    [h.order, h.from, h.to, h.at],
  );
  await tx.query(
    `INSERT INTO payments (id, order_id, provider, amount, currency, status, attempts, provider_ref, failure, created_at, updated_at)
     SELECT id, order_id, 'sandbox', amount, 'EUR', status, CASE WHEN provider_ref IS NULL THEN 0 ELSE 1 END, provider_ref, failure, created_at, updated_at
       FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[])
         AS p(id, order_id, amount, status, provider_ref, failure, created_at, updated_at)`,
    [p.id, p.order, p.amount, p.status, p.ref, p.failure, p.at, p.settledAt],
  );
  // The processor's own record of each charge it was asked for (the audit reconciles against it).
  await tx.query(
    `INSERT INTO sandbox_charges (id, idempotency_key, order_id, amount, currency, token, status, decline_reason, created_at, updated_at)
     SELECT ref, 'charge:' || payment_id, order_id, amount, 'EUR', CASE charged WHEN 'declined' THEN 'tok_declined' ELSE 'tok_ok' END,
            charged, CASE charged WHEN 'declined' THEN 'card_declined' END, created_at, created_at
       FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[]) AS c(ref, payment_id, order_id, amount, charged, created_at)
      WHERE charged <> 'none'`,
    [p.ref, p.id, p.order, p.amount, p.charged, p.settledAt],
  );
  await tx.query(
    `WITH t AS (
       INSERT INTO ledger_transactions (id, kind, order_id, payment_id, created_at)
       SELECT id, 'capture', order_id, payment_id, created_at FROM unnest($1::text[], $2::text[], $3::text[], $5::timestamptz[]) AS t(id, order_id, payment_id, created_at)
       RETURNING id)
     INSERT INTO ledger_entries (transaction_id, account, currency, debit, credit)
     SELECT c.id, side.account, 'EUR', side.debit * c.amount, side.credit * c.amount
       FROM unnest($1::text[], $4::bigint[]) AS c(id, amount)
      CROSS JOIN (VALUES ('processor_clearing', 1, 0), ('sales', 0, 1)) AS side(account, debit, credit)`,
    [txn.id, txn.order, txn.payment, txn.amount, txn.at],
  );
  await tx.query(
    `INSERT INTO stock_movements (sku, kind, on_hand_delta, reserved_delta, order_id, created_at)
     SELECT sku, 'reservation', 0, quantity, order_id, created_at FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[]) AS l(order_id, sku, quantity, created_at)`,
    [l.order, l.sku, l.quantity, l.at],
  );
  await tx.query(
    `WITH l AS (SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::timestamptz[]) AS l(order_id, sku, quantity, settle, settled_at)),
     moved AS (
       INSERT INTO stock_movements (sku, kind, on_hand_delta, reserved_delta, order_id, created_at)
       SELECT sku, settle, CASE settle WHEN 'sale' THEN -quantity ELSE 0 END, -quantity, order_id, settled_at FROM l)
     UPDATE stock_levels s SET on_hand = s.on_hand - sold.quantity
       FROM (SELECT sku, sum(quantity)::int AS quantity FROM l WHERE settle = 'sale' GROUP BY sku) sold
      WHERE s.sku = sold.sku`,
    [l.order, l.sku, l.quantity, l.settle, l.settledAt],
  );
}
