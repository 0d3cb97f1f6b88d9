-- The emails of order events (a confirmation when an order is paid, a notice when its payment
-- fails) are no longer enqueued by the transaction that publishes the event: messaging reads the
-- events outbox itself, as the webhook dispatcher (0010) and the operations figures (0022) do, and
-- enqueues a 'notifications.email' job per event that mails. Its position is this one row: the
-- (tx, id) of the last event it has passed, in the (tx, id) order of migration 0009.
CREATE TABLE email_outbox_cursor (
  -- Exactly one row.
  singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  tx          xid8 NOT NULL,
  id          text NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Start at the end of the outbox: the events written before this migration had their email job
-- enqueued with them, so none is read (or mailed) again. An event of a transaction still running
-- now was written by the code before this one, which enqueues its job too: if the reader meets it
-- later, the job it enqueues has the same key (the event id) and is not inserted, and the email's
-- unique (event, recipient, kind) would stop a second email all the same. An empty outbox starts
-- at the lowest position, before any event.
INSERT INTO email_outbox_cursor (tx, id)
SELECT COALESCE((SELECT tx FROM events ORDER BY tx DESC, id DESC LIMIT 1), '0'::xid8),
       COALESCE((SELECT id FROM events ORDER BY tx DESC, id DESC LIMIT 1), '');
