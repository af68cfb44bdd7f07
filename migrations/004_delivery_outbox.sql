-- The outbox of final messages: when the platform adapter's last message for a finished job (the
-- upload, the failure or cancel notice) went through, or it gave up for good. A finished job with
-- NULL here was never delivered (the process died in between) and is resent at the next start.
ALTER TABLE jobs ADD COLUMN delivered_at INTEGER;
-- Jobs that finished before this migration were delivered then (or never will be): not resent.
UPDATE jobs SET delivered_at = coalesce(finished_at, 0) WHERE state IN ('succeeded', 'failed', 'cancelled');
CREATE INDEX jobs_undelivered ON jobs (platform, finished_at) WHERE delivered_at IS NULL AND state IN ('succeeded', 'failed', 'cancelled');
