-- What the processor said when a payment failed, in its own words: free text from outside, kept
-- for staff and never shown to a customer (payments.failure holds our own wording).
ALTER TABLE payments ADD COLUMN processor_message text;

-- Why an operator must look at this payment; null when nothing is wrong. Set when the processor's
-- answer does not match what we asked (another amount, currency or order: not recorded as a
-- success, nothing posted to the ledger), or when a capture lands on an order in a state that can
-- take neither the payment nor a refund. The audit lists these until an operator clears them.
ALTER TABLE payments ADD COLUMN review_reason text;
CREATE INDEX payments_review ON payments (id) WHERE review_reason IS NOT NULL;
