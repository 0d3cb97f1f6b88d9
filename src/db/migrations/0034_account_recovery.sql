-- Account recovery and control: disabling a user, optional email verification, single-use tokens
-- (password reset, email verification) kept only as SHA-256 hashes, the admin's user search, and
-- account mail that belongs to no event.

ALTER TABLE users ADD COLUMN disabled_at timestamptz;
-- NULL: not verified (only matters when EMAIL_VERIFICATION is on).
ALTER TABLE users ADD COLUMN email_verified_at timestamptz;

-- The admin's search is a case-insensitive prefix of the email or the name: text_pattern_ops makes
-- LIKE 'abc%' an index range scan whatever the database's collation (pg_trgm, which would serve
-- substrings, is not loaded on PGlite).
CREATE INDEX users_email_prefix ON users (lower(email) text_pattern_ops);
CREATE INDEX users_name_prefix ON users (lower(name) text_pattern_ops);
-- Staff and admins are few among many customers: the console's staff list reads this small index.
CREATE INDEX users_staff ON users (id) WHERE role <> 'customer';

CREATE TABLE account_tokens (
  id          text PRIMARY KEY,
  user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  purpose     text NOT NULL CHECK (purpose IN ('password_reset', 'email_verification')),
  token_hash  bytea NOT NULL UNIQUE,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz
);
CREATE INDEX account_tokens_user_id ON account_tokens (user_id, purpose);
-- The retention job deletes expired tokens through this.
CREATE INDEX account_tokens_expires_at ON account_tokens (expires_at);

-- Account mail (a reset link, a verification link) is written by the job that asked for it, not
-- planned from an event: no event_id, and the job's id as the dedupe, so a retried job writes one mail.
ALTER TABLE emails ALTER COLUMN event_id DROP NOT NULL;
ALTER TABLE emails ADD COLUMN job_id text;
CREATE UNIQUE INDEX emails_job_id ON emails (job_id) WHERE job_id IS NOT NULL;
