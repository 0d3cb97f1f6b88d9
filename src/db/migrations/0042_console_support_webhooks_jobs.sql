-- What the console's webhooks and jobs pages show that was not kept before.
--
-- An endpoint's health at a glance: when a delivery to it last succeeded and last failed, written
-- by the attempt's own transaction (one row update; reading them off the attempt log would scan it).
ALTER TABLE webhook_endpoints
  ADD COLUMN last_success_at timestamptz,
  ADD COLUMN last_failure_at timestamptz;

-- Each attempt keeps what was sent and what came back: the request's headers with the signatures
-- left out (request_headers), and the first bytes of the receiver's answer (response_excerpt, at
-- most 2 KiB, cut by delivery.ts; untrusted text that the console shows as text, never as HTML).
ALTER TABLE webhook_delivery_attempts
  ADD COLUMN request_headers jsonb,
  ADD COLUMN response_excerpt text,
  ADD COLUMN response_truncated boolean NOT NULL DEFAULT false;

-- The deliveries an endpoint is failing: tried, and not (or no longer) succeeded. Counted per
-- endpoint on every listing of the endpoints; the partial index holds only those, usually none.
CREATE INDEX webhook_deliveries_failing ON webhook_deliveries (endpoint_id) WHERE status <> 'succeeded' AND attempts > 0;

-- The jobs page lists one queue's jobs in one state, newest first, by (created_on, id) cursor.
-- pg-boss's own indexes serve fetching (state < 'active', by start_after), not this. An index on
-- the partitioned parent is made on every partition, and on the partition of every queue declared
-- later (ATTACH PARTITION builds it). Its cost: one more index entry per job insert and state change.
CREATE INDEX job_by_state ON pgboss.job (name, state, created_on DESC, id DESC);
