-- The event outbox: what happened, written in the transaction that made it happen. Webhook
-- deliveries and the live stream of /v1/events are made from these rows, so nothing committed is
-- missed and nothing uncommitted is sent.
CREATE TABLE events (
  id          text PRIMARY KEY,
  type        text NOT NULL,
  -- The users this event concerns (the order's customer, a conversation's participants), for the live stream.
  audience    text[] NOT NULL DEFAULT '{}',
  data        jsonb NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_audience ON events USING gin (audience);
CREATE INDEX events_created_at ON events (created_at);
