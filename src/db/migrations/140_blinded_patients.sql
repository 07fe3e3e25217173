-- Blinded patient identifiers and the accounting of disclosures.

-- A fourth key use: 'blinding', the HSM-held HMAC key that turns a patient
-- identifier (system|value) into a blind. It has no public half: its public_jwk
-- is {"kty":"oct"} and its kid a key check value (see src/keys/blinding.ts).
ALTER TABLE gateway_keys DROP CONSTRAINT gateway_keys_use_check;
ALTER TABLE gateway_keys ADD CONSTRAINT gateway_keys_use_check CHECK (use IN ('sig', 'enc', 'audit', 'blinding'));
ALTER TABLE key_intents DROP CONSTRAINT key_intents_use_check;
ALTER TABLE key_intents ADD CONSTRAINT key_intents_use_check CHECK (use IN ('sig', 'enc', 'audit', 'blinding'));

-- Audit entries by blinded patient: one row per (blind, entry) for every entry
-- that names patients, written in the statement that appends the entry. Derived
-- data like audit_tiles: the entry itself (in the signed tree) is the record;
-- this makes "every entry about this patient" an index range scan instead of
-- a read of the whole log. Nothing in it is reversible: the blind is an HMAC
-- under a key that never leaves the HSM.
CREATE TABLE audit_patients (
  blind       bytea NOT NULL,          -- HMAC-SHA-256 of the normalised identifier
  recorded_at timestamptz NOT NULL,    -- = audit_log.recorded_at of the entry
  idx         bigint NOT NULL,         -- audit_log.idx (no FK: both are append-only, and the check would cost every intake)
  type        text NOT NULL            -- audit_log.type, so a disclosure lookup reads only exchange.sealed entries
);
CREATE INDEX audit_patients_blind_time ON audit_patients (blind, recorded_at);

CREATE TRIGGER audit_patients_no_update BEFORE UPDATE OR DELETE ON audit_patients FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_patients_no_truncate BEFORE TRUNCATE ON audit_patients FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
REVOKE ALL ON audit_patients FROM PUBLIC;

-- The audit entry of a delivery's receipt, so the accounting proves "received"
-- with that entry's inclusion proof instead of asserting it.
ALTER TABLE deliveries ADD COLUMN receipt_audit_idx bigint;
ALTER TABLE imaging_deliveries ADD COLUMN receipt_audit_idx bigint;

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gateway_audit_writer') THEN
    GRANT SELECT, INSERT ON audit_patients TO gateway_audit_writer;
  END IF;
END $$;
