-- Every change of an order's status, with its time, kept as long as the order: the events table
-- says the same but is pruned by retention, and the console's order page must still show the
-- history of a year-old order. Written in the same statement as the change (orders/repo.ts).
CREATE TABLE order_status_changes (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  order_id     text NOT NULL REFERENCES orders (id),
  -- NULL for the placing of the order.
  from_status  text,
  to_status    text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_status_changes_order_id ON order_status_changes (order_id, created_at, id);

-- Backfill from what there is: each order's placing, its events that retention has not pruned,
-- and, where no event is left, its current status at its last update (the one time known).
INSERT INTO order_status_changes (order_id, from_status, to_status, created_at)
SELECT order_id, lag(to_status) OVER w, to_status, at
  FROM (
    SELECT id AS order_id, 'pending_payment' AS to_status, created_at AS at, 0 AS seq FROM orders
    UNION ALL
    SELECT o.id, substr(e.type, 7), e.created_at, 1
      FROM events e JOIN orders o ON o.id = e.data->'order'->>'id'
     WHERE e.type IN ('order.paid', 'order.payment_failed', 'order.cancelled', 'order.fulfilled')
    UNION ALL
    SELECT o.id, o.status, o.updated_at, 2 FROM orders o
     WHERE o.status <> 'pending_payment'
       AND NOT EXISTS (SELECT 1 FROM events e WHERE e.type = 'order.' || o.status AND e.data->'order'->>'id' = o.id)
  ) changes
WINDOW w AS (PARTITION BY order_id ORDER BY at, seq)
ORDER BY order_id, at, seq;

