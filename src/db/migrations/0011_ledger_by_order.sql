-- The audit checks every paid or cancelled order against its ledger transactions, found by order:
-- without an index that was a scan of the ledger per order (minutes once there are tens of
-- thousands of orders; found by the bench, whose runs place that many).
CREATE INDEX ledger_transactions_order_id ON ledger_transactions (order_id, kind);
