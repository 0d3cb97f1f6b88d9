-- Catalog and inventory. Stock rules live in the database itself: no level is ever negative and
-- nothing is reserved beyond what is on hand, whatever the code above does.

CREATE TABLE products (
  id          text PRIMARY KEY,
  name        text NOT NULL,
  description text NOT NULL DEFAULT '',
  active      boolean NOT NULL DEFAULT true,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE variants (
  id           text PRIMARY KEY,
  product_id   text NOT NULL REFERENCES products (id),
  sku          text NOT NULL UNIQUE,
  name         text NOT NULL DEFAULT '',
  price_amount bigint NOT NULL CHECK (price_amount >= 0),
  currency     text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  position     integer NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX variants_product_id ON variants (product_id, position);

-- One small row per SKU, apart from the variant, because it is the hot row under load.
CREATE TABLE stock_levels (
  sku       text PRIMARY KEY REFERENCES variants (sku),
  on_hand   integer NOT NULL CHECK (on_hand >= 0),
  reserved  integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  CONSTRAINT stock_reserved_within_on_hand CHECK (reserved <= on_hand)
);

-- Every change of a stock level, so any level can be explained and recomputed:
-- on_hand = sum(on_hand_delta), reserved = sum(reserved_delta).
CREATE TABLE stock_movements (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sku             text NOT NULL REFERENCES stock_levels (sku),
  kind            text NOT NULL CHECK (kind IN ('initial', 'adjustment', 'reservation', 'release', 'sale')),
  on_hand_delta   integer NOT NULL,
  reserved_delta  integer NOT NULL,
  order_id        text,
  reason          text,
  actor_id        text,
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stock_movements_sku ON stock_movements (sku, id);
CREATE INDEX stock_movements_order_id ON stock_movements (order_id) WHERE order_id IS NOT NULL;
