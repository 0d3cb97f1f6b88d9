-- Webhook deliveries are made by a dispatcher that reads the events outbox in batches, in the
-- (tx, id) order of migration 0009 and only up to the horizon (pg_snapshot_xmin), instead of one
-- 'events.fanout' job per event. Its position is this one row: the (tx, id) of the last event it
-- has passed. Dispatchers in several processes take turns on the row's lock.
CREATE TABLE webhook_dispatch_cursor (
  -- Exactly one row.
  singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  tx          xid8 NOT NULL,
  id          text NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Start at the end of the outbox: events written before this migration were fanned out by their
-- jobs (or never will be: those jobs go with their queue below), not again by the dispatcher.
-- An empty outbox starts at the lowest position, before any event.
INSERT INTO webhook_dispatch_cursor (tx, id)
SELECT COALESCE((SELECT tx FROM events ORDER BY tx DESC, id DESC LIMIT 1), '0'::xid8),
       COALESCE((SELECT id FROM events ORDER BY tx DESC, id DESC LIMIT 1), '');

-- An endpoint receives the events of transactions that began writing after the one that created
-- it (transaction ids are handed out in that order): a strict order even when both happen within
-- one tick of the clock, which created_at is not. Endpoints that exist now get every later event.
ALTER TABLE webhook_endpoints ADD COLUMN created_tx xid8 NOT NULL DEFAULT pg_current_xact_id();

-- The 'events.fanout' queue is no longer declared or worked. pg-boss keeps a queue's row and its
-- job partition until the queue is deleted, so delete it: its jobs first (a queue with jobs cannot
-- be deleted), then the queue, then its dead-letter queue (which the queue's row names). Nothing
-- to do in a database where it was never declared.
DELETE FROM pgboss.job WHERE name IN ('events.fanout', 'events.fanout.dead-letter');
SELECT pgboss.delete_queue(name) FROM pgboss.queue WHERE name = 'events.fanout';
SELECT pgboss.delete_queue(name) FROM pgboss.queue WHERE name = 'events.fanout.dead-letter';
