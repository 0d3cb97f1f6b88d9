-- Every amount of money must be exact in a JavaScript number, which holds integers exactly only up
-- to 2^53 - 1 = 9007199254740991. The API bounds prices so that no order can total more (see
-- src/modules/orders/limits.ts); these constraints are the last word whatever the code does.
--
-- NOT VALID: rows written before this migration are not checked (a database that holds one would
-- otherwise refuse to migrate); every row inserted or updated from now on is. The audit reports
-- the old rows that are out of range.
ALTER TABLE variants ADD CONSTRAINT variants_price_amount_exact CHECK (price_amount <= 9007199254740991) NOT VALID;
ALTER TABLE orders ADD CONSTRAINT orders_total_amount_exact CHECK (total_amount <= 9007199254740991) NOT VALID;
ALTER TABLE order_lines ADD CONSTRAINT order_lines_total_amount_exact CHECK (total_amount <= 9007199254740991) NOT VALID;
ALTER TABLE payments ADD CONSTRAINT payments_amount_exact CHECK (amount <= 9007199254740991) NOT VALID;
ALTER TABLE refunds ADD CONSTRAINT refunds_amount_exact CHECK (amount <= 9007199254740991) NOT VALID;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_amount_exact CHECK (debit <= 9007199254740991 AND credit <= 9007199254740991) NOT VALID;
