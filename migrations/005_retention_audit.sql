-- Where an admin action ran (Discord guild or Slack workspace, and channel); NULL for older rows
-- and for the CLI.
ALTER TABLE admin_audit ADD COLUMN group_id TEXT;
ALTER TABLE admin_audit ADD COLUMN channel_id TEXT;
-- When the retention sweep removed a finished job's output folder (the row stays for history
-- and quota); NULL while the files are kept.
ALTER TABLE jobs ADD COLUMN files_removed_at INTEGER;
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX processed_events_created_at ON processed_events (created_at);
