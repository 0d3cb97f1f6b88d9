-- The sandbox card processor's own books. It plays an external processor that happens to live in
-- the same database: only src/modules/payments/providers/sandbox.ts reads or writes these tables,
-- and nothing here references our business tables (an order id is just metadata the caller sent).
-- Like a real processor it dedupes by the idempotency key each request carries: the UNIQUE index
-- is the arbiter when two requests with one key race, not a read before the write.

CREATE TABLE sandbox_charges (
  id               text PRIMARY KEY,
  idempotency_key  text NOT NULL UNIQUE,
  order_id         text NOT NULL,
  amount           bigint NOT NULL CHECK (amount > 0),
  currency         text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  token            text NOT NULL,
  description      text,
  -- pending: seen, not settled yet (a transient failure so far); succeeded and declined are final.
  status           text NOT NULL CHECK (status IN ('pending', 'succeeded', 'declined')),
  decline_reason   text,
  -- Requests received with this key, the first included.
  attempts         integer NOT NULL DEFAULT 1 CHECK (attempts > 0),
  -- Kept by the refund statement under the charge's row lock; the CHECK makes an over-refund
  -- impossible even for a statement that forgot to look.
  refunded_amount  bigint NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0 AND refunded_amount <= amount),
  CHECK (refunded_amount = 0 OR status = 'succeeded'),
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandbox_charges_status ON sandbox_charges (status, id DESC);

CREATE TABLE sandbox_refunds (
  id               text PRIMARY KEY,
  idempotency_key  text NOT NULL UNIQUE,
  -- The charge the caller named; declined refunds of charges the processor never made are kept too,
  -- so a repeat with the same key answers the same, hence no foreign key.
  charge_id        text NOT NULL,
  amount           bigint NOT NULL CHECK (amount > 0),
  currency         text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  status           text NOT NULL CHECK (status IN ('succeeded', 'declined')),
  decline_reason   text,
  created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandbox_refunds_charge_id ON sandbox_refunds (charge_id);
