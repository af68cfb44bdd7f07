-- The dashboard: sign-in, and indexes for its usage page. Only SHA-256 hashes of the link and
-- session tokens are kept: a copy of the database signs no one in. Times are milliseconds since
-- the Unix epoch (UTC).

-- One-time sign-in links (`reelbot dashboard link`, `/admin dashboard`).
CREATE TABLE dashboard_links (
  token_hash  TEXT    PRIMARY KEY,
  platform    TEXT    NOT NULL,                 -- who asked for it: discord | slack | cli
  actor_id    TEXT    NOT NULL,
  created_at  INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL,
  used_at     INTEGER                           -- set when it signed someone in: it never works again
);
CREATE INDEX dashboard_links_expires ON dashboard_links (expires_at);

-- Signed-in browsers (the HttpOnly session cookie holds the token).
CREATE TABLE dashboard_sessions (
  token_hash  TEXT    PRIMARY KEY,
  platform    TEXT    NOT NULL,
  actor_id    TEXT    NOT NULL,
  created_at  INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL
);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);

-- The dashboard's usage charts (and `reelbot usage`) sum the ledger over a period of all users;
-- its failure rate and durations read the jobs submitted in a period.
CREATE INDEX quota_ledger_charged_at ON quota_ledger (charged_at);
CREATE INDEX jobs_queued_at ON jobs (queued_at);
