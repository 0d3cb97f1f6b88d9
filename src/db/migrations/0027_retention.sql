-- What the retention job (modules/retention) needs to find old rows by an index, one small batch
-- at a time, rather than by scanning the whole table for each batch. Tables whose ids sort by
-- time (emails, webhook_delivery_attempts) are pruned by a range of their primary key, and events
-- and idempotency keys have their created_at index already.
CREATE INDEX rate_limit_hits_window_start ON rate_limit_hits (window_start);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
