-- Webhooks: the endpoints admins register, one delivery per (endpoint, event), and one row per
-- attempt to deliver it (the delivery log that GET /v1/webhook-endpoints/{id}/deliveries shows).

CREATE TABLE webhook_endpoints (
  id               text PRIMARY KEY,
  url              text NOT NULL CHECK (url ~ '^https?://'),
  -- Event types, or '{*}' for every type.
  events           text[] NOT NULL CHECK (cardinality(events) > 0),
  -- Kept in clear: it is needed to sign every delivery. Shown once, at creation; never logged.
  secret           text NOT NULL,
  enabled          boolean NOT NULL DEFAULT true,
  -- Time of the first failed attempt since the last success (NULL while deliveries succeed): an
  -- endpoint failing for longer than the configured window is disabled.
  failing_since    timestamptz,
  disabled_at      timestamptz,
  disabled_reason  text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  CHECK (enabled = (disabled_at IS NULL))
);

-- One per endpoint and event, made by the fan-out: the unique key is what makes a second fan-out
-- of the same event a no-op. `round` counts manual redeliveries; a delivery job carries the round it
-- was made for, so a job superseded by a redelivery does nothing.
CREATE TABLE webhook_deliveries (
  endpoint_id  text NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
  event_id     text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
  status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
  round        integer NOT NULL DEFAULT 1,
  attempts     integer NOT NULL DEFAULT 0,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_event_id ON webhook_deliveries (event_id);

-- Each HTTP attempt, successful or not. `attempt` numbers the attempts of one delivery from 1,
-- across redeliveries.
CREATE TABLE webhook_delivery_attempts (
  id           text PRIMARY KEY,
  endpoint_id  text NOT NULL,
  event_id     text NOT NULL,
  event_type   text NOT NULL,
  attempt      integer NOT NULL CHECK (attempt > 0),
  succeeded    boolean NOT NULL,
  -- The answer's status, or NULL when there was none (timeout, network error).
  status_code  integer,
  error        text,
  duration_ms  integer NOT NULL CHECK (duration_ms >= 0),
  started_at   timestamptz NOT NULL,
  finished_at  timestamptz NOT NULL,
  FOREIGN KEY (endpoint_id, event_id) REFERENCES webhook_deliveries (endpoint_id, event_id) ON DELETE CASCADE,
  CHECK (succeeded = COALESCE(status_code BETWEEN 200 AND 299, false))
);
CREATE INDEX webhook_delivery_attempts_endpoint ON webhook_delivery_attempts (endpoint_id, id DESC);
CREATE INDEX webhook_delivery_attempts_delivery ON webhook_delivery_attempts (endpoint_id, event_id);
