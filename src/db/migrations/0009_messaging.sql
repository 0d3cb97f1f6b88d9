-- Messaging: conversations between a customer and the store's staff, their messages and each
-- participant's read position; the ordering column the live event stream reads the outbox by;
-- which users have a live stream open; and the notification emails, one per (event, recipient, kind).

CREATE TABLE conversations (
  id               text PRIMARY KEY,
  -- The customer who opened it (a user id, or an API key id when a key with the customer role did).
  customer_id      text NOT NULL,
  order_id         text REFERENCES orders (id),
  subject          text NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 200),
  last_message_id  text,
  last_message_at  timestamptz NOT NULL DEFAULT now(),
  created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversations_customer_id ON conversations (customer_id, id DESC);

CREATE TABLE messages (
  id               text PRIMARY KEY,
  conversation_id  text NOT NULL REFERENCES conversations (id),
  author_id        text NOT NULL,
  author_role      text NOT NULL CHECK (author_role IN ('customer', 'staff', 'admin')),
  -- Plain text exactly as written; the limit matches the API's (characters, not bytes).
  body             text NOT NULL CHECK (char_length(body) BETWEEN 1 AND 10000),
  created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_conversation_id ON messages (conversation_id, id);

-- Per participant: every message up to and including last_read_message_id has been read.
CREATE TABLE conversation_reads (
  conversation_id       text NOT NULL REFERENCES conversations (id),
  user_id               text NOT NULL,
  last_read_message_id  text NOT NULL,
  updated_at            timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (conversation_id, user_id)
);

-- The live stream reads the outbox in the order of the transactions that wrote it. An event id
-- is made before its transaction commits, so ids do not sort by commit: a reader that remembered
-- "the last id I sent" could skip an event committed just after it with a smaller id. The
-- writing transaction's id does better: every event whose transaction id is below the oldest
-- transaction still running (pg_snapshot_xmin) is committed or gone for good, so a reader that
-- only goes up to that horizon, in (tx, id) order, never sees an older event appear behind it.
-- The default takes the top-level transaction id, also inside a savepoint.
ALTER TABLE events ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX events_tx_id ON events (tx, id);

-- Open live streams, one row per connection, refreshed at every heartbeat: a user with a fresh row
-- is watching, so a new message is not also sent to them by email. A process that dies leaves its
-- rows to go stale.
CREATE TABLE event_stream_connections (
  id         text PRIMARY KEY,
  user_id    text NOT NULL,
  opened_at  timestamptz NOT NULL DEFAULT now(),
  seen_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_stream_connections_user_id ON event_stream_connections (user_id, seen_at);

-- Notification emails. The unique key is the dedupe: however often the job of an event runs, a
-- recipient gets at most one email of a kind about it. status: pending -> sending (claimed by one
-- worker until claimed_until) -> sent. Without SMTP_URL, "sent" means kept here as the dev
-- mailbox (transport 'mailbox'), which staff read through GET /v1/dev/mailbox.
CREATE TABLE emails (
  id             text PRIMARY KEY,
  event_id       text NOT NULL REFERENCES events (id),
  recipient_id   text NOT NULL,
  kind           text NOT NULL,
  to_address     text NOT NULL,
  subject        text NOT NULL,
  text_body      text NOT NULL,
  html_body      text NOT NULL,
  status         text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent')),
  transport      text CHECK (transport IN ('smtp', 'mailbox')),
  attempts       integer NOT NULL DEFAULT 0,
  last_error     text,
  claimed_until  timestamptz,
  created_at     timestamptz NOT NULL DEFAULT now(),
  sent_at        timestamptz,
  UNIQUE (event_id, recipient_id, kind)
);
CREATE INDEX emails_mailbox ON emails (id DESC) WHERE transport = 'mailbox';
