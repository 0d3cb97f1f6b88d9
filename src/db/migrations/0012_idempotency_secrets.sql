-- Some stored answers carry secrets (a new API key is shown once, in the answer that a retry must
-- replay). So a key is kept as its SHA-256, and an answer is sealed (AES-256-GCM) under a key
-- derived from the raw Idempotency-Key: only a retry that presents the key can read it, and the
-- database alone holds neither. Rows from before this migration keep their plaintext answer in
-- response_body until they are purged (IDEMPOTENCY_RETENTION_HOURS); a retry still replays them.
ALTER TABLE idempotency_keys ALTER COLUMN key TYPE bytea USING sha256(convert_to(key, 'UTF8'));
ALTER TABLE idempotency_keys RENAME COLUMN key TO key_hash;
ALTER TABLE idempotency_keys ADD COLUMN response_sealed bytea;
