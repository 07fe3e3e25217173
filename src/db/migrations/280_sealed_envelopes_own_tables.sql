-- Sealed envelopes in tables of their own. In the delivery and inbox rows
-- they shared one TOAST file with whatever else went out of line, above all
-- a protocol v2 delivery's dual-signed receipts (transport and processed,
-- about 11 KB together, more than a row holds). Those are written after the
-- envelope, so after a purge the file's tail still held live receipt chunks
-- and VACUUM, which truncates only empty pages at the end, returned nothing.
-- Here the envelopes' TOAST holds envelopes only: a purge deletes the row,
-- and what retention frees at the file's end goes back to the file system.
-- A row exists exactly while the content is held (purged_at IS NULL); the
-- purge deletes it and sets purged_at in one statement.
CREATE TABLE delivery_envelopes (
  delivery_id  uuid PRIMARY KEY REFERENCES deliveries (id) ON DELETE CASCADE,
  envelope     bytea NOT NULL          -- packed compact JWE (packed-jwe.ts), the only copy of the content
);
CREATE TABLE inbox_envelopes (
  message_id   uuid PRIMARY KEY REFERENCES inbox_messages (id) ON DELETE CASCADE,
  envelope     text NOT NULL           -- the compact JWE as received (for imaging, the manifest envelope)
);
-- As before (migrations 030, 040, 080): ciphertext stored out of line without
-- trying to compress it, and no insert-triggered vacuum of write-once pages.
ALTER TABLE delivery_envelopes ALTER COLUMN envelope SET STORAGE EXTERNAL,
  SET (toast.autovacuum_vacuum_insert_threshold = -1);
ALTER TABLE inbox_envelopes ALTER COLUMN envelope SET STORAGE EXTERNAL,
  SET (toast.autovacuum_vacuum_insert_threshold = -1);

-- deliveries.protocol and imaging_deliveries.protocol (migration 230) were
-- left at their default; they are written at intake from now on and read
-- where a partner's answer must match the delivery's version, also after a
-- purge. Set here for earlier rows: 2 for a hybrid envelope or, once the
-- envelope is purged, a dual-signed (JSON) receipt. The unused held column goes.
CREATE OR REPLACE FUNCTION pg_temp.b64u_decode(t text) RETURNS bytea LANGUAGE sql IMMUTABLE AS
$$ SELECT decode(translate(t, '-_', '+/') || repeat('=', (4 - length(t) % 4) % 4), 'base64') $$;
CREATE OR REPLACE FUNCTION pg_temp.hybrid(compact_prefix text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
  SELECT convert_from(pg_temp.b64u_decode(split_part(compact_prefix, '.', 1)), 'UTF8')::jsonb ->> 'alg'
         = 'x-ECDH-ES+ML-KEM-768'
$$;
-- A packed envelope (migration 070) starts with its compact prefix's length, then the prefix.
CREATE OR REPLACE FUNCTION pg_temp.packed_prefix(packed bytea) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT convert_from(substring(packed from 3 for (get_byte(packed, 0) << 8) + get_byte(packed, 1)), 'UTF8') $$;
UPDATE deliveries SET protocol = 2
 WHERE coalesce(pg_temp.hybrid(pg_temp.packed_prefix(envelope)), receipt LIKE '{%', false);
UPDATE imaging_deliveries SET protocol = 2
 WHERE coalesce(pg_temp.hybrid(manifest_envelope), receipt LIKE '{%', false);
ALTER TABLE deliveries DROP COLUMN held;
ALTER TABLE imaging_deliveries DROP COLUMN held;

INSERT INTO delivery_envelopes (delivery_id, envelope)
  SELECT id, envelope FROM deliveries WHERE envelope IS NOT NULL;
INSERT INTO inbox_envelopes (message_id, envelope)
  SELECT id, envelope FROM inbox_messages WHERE envelope IS NOT NULL;

-- The rows' own TOAST keeps migration 080's setting: what still goes out of
-- line there (a v2 delivery's second receipt) is written once as well.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_purged, DROP COLUMN envelope;
ALTER TABLE inbox_messages DROP CONSTRAINT inbox_messages_purged, DROP COLUMN envelope;
