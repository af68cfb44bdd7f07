-- Dashboard sign-in. Only SHA-256 hashes of the link and session tokens are kept: a copy of the
-- database signs no one in. Times are milliseconds since the Unix epoch (UTC).

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
