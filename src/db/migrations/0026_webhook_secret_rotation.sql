-- Rotating a webhook endpoint's signing secret without dropping events: the secret it replaces
-- keeps signing deliveries (next to the new one) until previous_secret_expires_at, a grace period
-- the admin chose, so the receiver can switch at its own pace. At most one old secret at a time:
-- a second rotation during a grace period is refused unless it ends every old secret at once
-- (modules/webhooks/service.ts). An expired previous secret is no longer used, and the retention
-- job clears it.
ALTER TABLE webhook_endpoints
  ADD COLUMN previous_secret text,
  ADD COLUMN previous_secret_expires_at timestamptz,
  ADD COLUMN secret_rotated_at timestamptz,
  ADD CONSTRAINT webhook_endpoints_previous_secret CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL));
