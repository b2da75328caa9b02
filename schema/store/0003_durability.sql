-- Per-store durability: 'async' (acknowledge after the local commit; replicated to object storage
-- within replication.snapshot_interval_ms) or 'sync' (acknowledge only after the snapshot that
-- contains the write is in object storage).
ALTER TABLE settings ADD COLUMN durability TEXT NOT NULL DEFAULT 'async';
