-- The model folder a job ran with ('' = the built-in set), so that cost rates are learned per
-- (kind, device, model). NULL for jobs made before this migration.
ALTER TABLE jobs ADD COLUMN model TEXT;
CREATE INDEX jobs_cost_history ON jobs (kind, device, state, finished_at);
