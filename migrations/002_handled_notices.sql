-- Notices a bot sends at most once, whatever the redeliveries and restarts (a hint to a thread
-- whose parent has no clip). Keys are the adapter's: `hint:<channel>:<thread>`.
CREATE TABLE handled_notices (
  platform   TEXT    NOT NULL,
  key        TEXT    NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (platform, key)
);
CREATE INDEX handled_notices_created_at ON handled_notices (created_at);
