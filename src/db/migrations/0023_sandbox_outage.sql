-- An outage of the sandbox processor, started by an admin for a drill: until `until`, every charge
-- request answers "processor unavailable" (retryable) without touching the processor's books, as a
-- real processor that is down. One row at most; only the sandbox provider reads it.
CREATE TABLE sandbox_outage (
  singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  until       timestamptz NOT NULL,
  started_by  text NOT NULL,
  started_at  timestamptz NOT NULL DEFAULT now()
);
