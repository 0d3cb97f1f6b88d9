-- Payments, refunds, and the double-entry ledger that records every movement of money.

CREATE TABLE payments (
  id            text PRIMARY KEY,
  -- One payment per order: the charge job can run twice, the payment row exists once.
  order_id      text NOT NULL UNIQUE REFERENCES orders (id),
  -- Which processor charged it; set by the first charge attempt.
  provider      text,
  amount        bigint NOT NULL CHECK (amount >= 0),
  currency      text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  status        text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'refunded')),
  attempts      integer NOT NULL DEFAULT 0,
  provider_ref  text,
  failure       text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE refunds (
  id            text PRIMARY KEY,
  -- A full refund, at most one per payment: cancelling twice cannot refund twice.
  payment_id    text NOT NULL UNIQUE REFERENCES payments (id),
  amount        bigint NOT NULL CHECK (amount >= 0),
  currency      text NOT NULL,
  status        text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
  attempts      integer NOT NULL DEFAULT 0,
  provider_ref  text,
  failure       text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Double entry: a transaction and its entries. Each entry is a debit or a credit of one account
-- in one currency; per transaction and currency, debits equal credits. The constraint trigger
-- below checks that at commit, so an unbalanced transaction cannot be committed at all.
CREATE TABLE ledger_transactions (
  id          text PRIMARY KEY,
  kind        text NOT NULL CHECK (kind IN ('capture', 'refund')),
  order_id    text NOT NULL REFERENCES orders (id),
  payment_id  text NOT NULL REFERENCES payments (id),
  created_at  timestamptz NOT NULL DEFAULT now(),
  -- One capture and at most one refund per payment: a job that runs twice posts once.
  UNIQUE (payment_id, kind)
);

CREATE TABLE ledger_entries (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  transaction_id  text NOT NULL REFERENCES ledger_transactions (id),
  account         text NOT NULL,
  currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  debit           bigint NOT NULL DEFAULT 0 CHECK (debit >= 0),
  credit          bigint NOT NULL DEFAULT 0 CHECK (credit >= 0),
  CHECK ((debit = 0) <> (credit = 0))
);
CREATE INDEX ledger_entries_transaction_id ON ledger_entries (transaction_id);

CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (
    SELECT 1 FROM ledger_entries WHERE transaction_id = NEW.transaction_id
     GROUP BY currency HAVING sum(debit) <> sum(credit)
  ) THEN
    RAISE EXCEPTION 'ledger transaction % is not balanced', NEW.transaction_id USING ERRCODE = '23514';
  END IF;
  RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_entries_balanced
  AFTER INSERT OR UPDATE ON ledger_entries
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

-- Entries are history: they are never changed or removed.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'ledger entries are append-only' USING ERRCODE = '23514';
END $$;

CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
