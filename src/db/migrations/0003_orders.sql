-- Orders and the idempotency keys that make a retried POST safe.

CREATE TABLE orders (
  id              text PRIMARY KEY,
  -- A user id, or an API key id when a key places the order.
  customer_id     text NOT NULL,
  status          text NOT NULL CHECK (status IN ('pending_payment', 'paid', 'payment_failed', 'cancelled', 'fulfilled')),
  currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  total_amount    bigint NOT NULL CHECK (total_amount >= 0),
  payment_method  text NOT NULL,
  payment_token   text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer_id ON orders (customer_id, id DESC);
CREATE INDEX orders_status ON orders (status, id DESC);

CREATE TABLE order_lines (
  order_id     text NOT NULL REFERENCES orders (id),
  line_no      integer NOT NULL,
  sku          text NOT NULL,
  quantity     integer NOT NULL CHECK (quantity > 0),
  unit_amount  bigint NOT NULL CHECK (unit_amount >= 0),
  total_amount bigint NOT NULL CHECK (total_amount = unit_amount * quantity),
  PRIMARY KEY (order_id, line_no)
);

-- The first response to a (principal, key) is stored in the same transaction as the work it
-- describes: a committed row always has its response, and a crash leaves neither.
CREATE TABLE idempotency_keys (
  principal_id   text NOT NULL,
  key            text NOT NULL,
  request_hash   bytea NOT NULL,
  status_code    integer NOT NULL DEFAULT 0,
  response_body  text NOT NULL DEFAULT '',
  created_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (principal_id, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
