-- A protocol v2 receipt is dual-signed (ES256 + ML-DSA-65): about 5 KB,
-- beyond the 2 KB at which PostgreSQL moves a value out of line. Out of line,
-- the kept receipts' TOAST chunks are written after the envelopes' chunks, so
-- a purged envelope's space is reusable but the TOAST file never shrinks
-- (VACUUM truncates only empty pages at its end). Kept in the row instead
-- (MAIN, and rows up to a page before anything moves out of line), receipts
-- stay in the table and the envelopes' TOAST space is returned once retention
-- purges them. The envelope itself is always larger than a page and still
-- moves out of line. A delivery's processed receipt on top of its transport
-- receipt no longer fits a row and goes out of line too (docs/production.md).
ALTER TABLE deliveries ALTER COLUMN receipt SET STORAGE MAIN, SET (toast_tuple_target = 8160);
ALTER TABLE inbox_messages ALTER COLUMN receipt SET STORAGE MAIN, SET (toast_tuple_target = 8160);
ALTER TABLE imaging_deliveries ALTER COLUMN receipt SET STORAGE MAIN, SET (toast_tuple_target = 8160);
