-- What the console's operations page and /metrics/system read: figures of the whole system, not
-- of one process. Each process keeps its counters in memory (nothing more per request or order)
-- and writes them here every few seconds; the order figures are aggregated from the events outbox
-- by a reader with a cursor, as the webhook dispatcher reads it. See docs/ARCHITECTURE.md,
-- "The operations page".

-- Every live process (API, worker, or both), refreshed at each flush: alive while seen_at is recent.
CREATE TABLE ops_processes (
  id              text PRIMARY KEY,
  host            text NOT NULL,
  pid             integer NOT NULL,
  version         text NOT NULL,
  serves_http     boolean NOT NULL DEFAULT false,
  runs_workers    boolean NOT NULL DEFAULT false,
  started_at      timestamptz NOT NULL,
  seen_at         timestamptz NOT NULL DEFAULT now(),
  rss_bytes       bigint NOT NULL DEFAULT 0,
  heap_used_bytes bigint NOT NULL DEFAULT 0,
  -- Event-loop delay over the last flush interval, in milliseconds.
  loop_lag_p99_ms real NOT NULL DEFAULT 0,
  -- This process's database pool (NULL on the embedded database, which has one connection).
  pool_size       integer,
  pool_in_use     integer,
  pool_waiting    integer,
  -- Jobs this process is running now, by queue: {"payments.charge": 3}.
  running_jobs    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX ops_processes_seen_at ON ops_processes (seen_at);

-- One row per flush of one process that counted something: the counters since its last flush.
-- counters: {"<metric>\t<label>": [count, sum]}; latency: request counts per bucket of
-- operations.ts's latencyBucketsMs (the last one open-ended).
CREATE TABLE ops_rollups (
  at          timestamptz NOT NULL,
  process_id  text NOT NULL,
  counters    jsonb NOT NULL,
  latency     integer[] NOT NULL
);
CREATE INDEX ops_rollups_at ON ops_rollups (at);

-- The same counters added up since the database was created, for Prometheus counters that never go
-- down when a process restarts or rollups are pruned.
CREATE TABLE ops_totals (
  metric  text NOT NULL,
  label   text NOT NULL,
  count   bigint NOT NULL DEFAULT 0,
  sum     bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (metric, label)
);

-- Order events aggregated from the outbox, per 10-second bucket of their creation, type and
-- currency: count and the sum of the orders' totals (minor units).
CREATE TABLE ops_order_stats (
  bucket    timestamptz NOT NULL,
  type      text NOT NULL,
  currency  text NOT NULL,
  count     bigint NOT NULL,
  amount    bigint NOT NULL,
  PRIMARY KEY (bucket, type, currency)
);

-- The reader's position in the outbox, in (tx, id) order below the horizon (migration 0009), as
-- webhook_dispatch_cursor. It starts at the end: earlier events are not counted.
CREATE TABLE ops_outbox_cursor (
  singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  tx          xid8 NOT NULL,
  id          text NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ops_outbox_cursor (tx, id)
SELECT COALESCE((SELECT tx FROM events ORDER BY tx DESC, id DESC LIMIT 1), '0'::xid8),
       COALESCE((SELECT id FROM events ORDER BY tx DESC, id DESC LIMIT 1), '');

-- Each audit run (scheduled, from the console, or the command line): its verdict and checks.
CREATE TABLE ops_audit_runs (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  ran_at     timestamptz NOT NULL DEFAULT now(),
  ok         boolean NOT NULL,
  -- [{name, ok, violations: [...]}] as the audit answered them.
  checks     jsonb NOT NULL,
  duration_ms integer NOT NULL
);
