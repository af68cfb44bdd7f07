-- One coordinator per database: the process that runs jobs (`reelbot serve`, or a `reelbot render`
-- or `edit` when no serve runs) holds the 'coordinator' lease and renews its heartbeat; a lease
-- whose expires_at has passed (or whose process on this host is gone) may be taken over.
CREATE TABLE instance_leases (
  name           TEXT    PRIMARY KEY,           -- 'coordinator'
  instance_id    TEXT    NOT NULL,              -- random, one per process start
  role           TEXT    NOT NULL,              -- serve | render | edit
  pid            INTEGER NOT NULL,
  host           TEXT    NOT NULL,
  control_socket TEXT,                          -- where a CLI on this host submits through it (NULL: it takes no jobs from others)
  acquired_at    INTEGER NOT NULL,
  heartbeat_at   INTEGER NOT NULL,
  expires_at     INTEGER NOT NULL
);

-- The instance whose run started the job's current attempt: recovery only touches running jobs
-- whose owner no longer holds a live lease. NULL for jobs started before this migration.
ALTER TABLE jobs ADD COLUMN owner_instance TEXT;
