-- Sealed envelopes are written once and never updated, so the TOAST tables
-- that hold them only grow. PostgreSQL's insert-triggered autovacuum would
-- read and rewrite each new TOAST page once more (and, with data checksums,
-- log a full page image of each if a checkpoint came between): measured,
-- 60,000 pages at 20 MB/s for 23 s, which stalled COMMITs for 50-60 ms
-- throughout (docs/decisions/0008-toast-autovacuum-off-for-envelopes.md). It is turned off for
-- these TOAST tables only; vacuums for dead rows and anti-wraparound
-- freezing still run, and the tables themselves keep every autovacuum.
ALTER TABLE deliveries SET (toast.autovacuum_vacuum_insert_threshold = -1);
ALTER TABLE inbox_messages SET (toast.autovacuum_vacuum_insert_threshold = -1);
