-- The least an order must do, written by hand and kept fixed (not generated): reserve the stock,
-- insert the order and its line, write the outbox row (the charge job), in one transaction of 6
-- statements. The bench prints the full HTTP path's orders/s as a share of this (issue 15's target:
-- at least 40%), so that the figure does not move when the order path's own statements change.
-- Needs a database seeded like the bench's (bench/lib/seed.ts):
--   pgbench -n -M prepared -c <clients> -j 2 -T <seconds> -D nskus=<SKUs> -f <this file> <url>
\set s random(1, :nskus)
\set n random(1, 9000000000000000000)
BEGIN;
UPDATE stock_levels SET reserved = reserved + 1 WHERE sku = 'B' || lpad(:s::text, 5, '0') AND on_hand - reserved >= 1;
INSERT INTO orders (id, customer_id, status, currency, total_amount, payment_method, payment_token) VALUES ('ord_min_' || :n, 'usr_bench_' || :client_id, 'pending_payment', 'EUR', 1050, 'card', 'tok_ok');
INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_amount, total_amount) VALUES ('ord_min_' || :n, 1, 'B' || lpad(:s::text, 5, '0'), 1, 1050, 1050);
INSERT INTO pgboss.job (name, data) VALUES ('payments.charge', jsonb_build_object('orderId', 'ord_min_' || :n));
COMMIT;
