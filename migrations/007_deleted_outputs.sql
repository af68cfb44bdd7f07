-- A finished job's stored output (video, thumbnail, job folder) removed by its owner or an admin
-- (the 🗑 Delete button): when, and by whom (platform:external id). The job row and its ledger
-- rows stay: usage and history still count it.
ALTER TABLE jobs ADD COLUMN output_deleted_at INTEGER;
ALTER TABLE jobs ADD COLUMN output_deleted_by TEXT;
