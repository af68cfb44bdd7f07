-- reelbot initial schema. Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE users (
  id             INTEGER PRIMARY KEY,
  platform       TEXT    NOT NULL CHECK (platform IN ('discord', 'slack', 'cli')),
  external_id    TEXT    NOT NULL,
  display_name   TEXT,
  tier           TEXT,                          -- NULL: the configured default tier
  banned         INTEGER NOT NULL DEFAULT 0 CHECK (banned IN (0, 1)),
  ban_reason     TEXT,
  quota_override TEXT,                          -- JSON: partial tier limits set by an admin
  created_at     INTEGER NOT NULL,
  UNIQUE (platform, external_id)
);

CREATE TABLE jobs (
  id              INTEGER PRIMARY KEY,
  kind            TEXT    NOT NULL CHECK (kind IN ('text2video', 'edit')),
  params          TEXT    NOT NULL,             -- JSON
  state           TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
  user_id         INTEGER NOT NULL REFERENCES users (id),
  platform        TEXT    NOT NULL,
  group_id        TEXT,                         -- Discord guild or Slack workspace
  channel_id      TEXT,
  message_refs    TEXT    NOT NULL DEFAULT '{}', -- JSON: platform message ids, interaction tokens' ids…
  seed            INTEGER NOT NULL,
  priority        INTEGER NOT NULL DEFAULT 0,   -- admin jobs jump the line
  device          TEXT,
  attempts        INTEGER NOT NULL DEFAULT 0,   -- how many times it was started
  estimated_gpu_s REAL    NOT NULL,
  gpu_seconds     REAL,
  result          TEXT,                         -- JSON from the engine
  error_code      TEXT,
  error           TEXT,
  queued_at       INTEGER NOT NULL,
  started_at      INTEGER,
  finished_at     INTEGER,
  cancel_requested_at INTEGER
);
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_user ON jobs (user_id, id);
CREATE INDEX jobs_kind_finished ON jobs (kind, state, finished_at);

-- Quota is a ledger: usage is a SUM over these rows, never a counter that can drift.
-- reserve: +1 job, +estimate; settle: 0 jobs, measured - estimate; refund: -1 job, -estimate.
CREATE TABLE quota_ledger (
  id          INTEGER PRIMARY KEY,
  job_id      INTEGER NOT NULL REFERENCES jobs (id),
  user_id     INTEGER NOT NULL REFERENCES users (id),
  group_id    TEXT,
  entry       TEXT    NOT NULL CHECK (entry IN ('reserve', 'settle', 'refund')),
  jobs        INTEGER NOT NULL,
  gpu_seconds REAL    NOT NULL,
  charged_at  INTEGER NOT NULL,                 -- the job's submit time: all rows of a job count in one period
  created_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX quota_ledger_one_reserve ON quota_ledger (job_id) WHERE entry = 'reserve';
-- A job is settled or refunded at most once, never both: no double charge, no double refund.
CREATE UNIQUE INDEX quota_ledger_one_close ON quota_ledger (job_id) WHERE entry IN ('settle', 'refund');
CREATE INDEX quota_ledger_user ON quota_ledger (user_id, charged_at);
CREATE INDEX quota_ledger_group ON quota_ledger (group_id, charged_at);

-- Platform events already turned into a job (Discord interaction ids, Slack event ids).
CREATE TABLE processed_events (
  platform   TEXT    NOT NULL,
  event_id   TEXT    NOT NULL,
  job_id     INTEGER NOT NULL REFERENCES jobs (id),
  created_at INTEGER NOT NULL,
  PRIMARY KEY (platform, event_id)
);

CREATE TABLE admin_audit (
  id          INTEGER PRIMARY KEY,
  platform    TEXT    NOT NULL,
  actor_id    TEXT    NOT NULL,
  action      TEXT    NOT NULL,
  target      TEXT,
  details     TEXT    NOT NULL DEFAULT '{}',    -- JSON
  created_at  INTEGER NOT NULL
);
CREATE INDEX admin_audit_time ON admin_audit (created_at);

-- Queue-wide switches that must survive a restart (pause).
CREATE TABLE settings (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
