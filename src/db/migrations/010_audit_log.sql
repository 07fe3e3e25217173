-- Tamper-evident audit log: entries are the leaves of an RFC 9162 Merkle tree.
-- idx is the leaf index, gapless from 0; audit_head hands out indexes under a
-- row lock, so concurrent appenders get consecutive, committed-in-order ranges.
CREATE TABLE audit_log (
  idx         bigint PRIMARY KEY,
  recorded_at timestamptz NOT NULL,
  type        text NOT NULL,
  outcome     text NOT NULL,
  entry       text NOT NULL,   -- canonical JSON (sorted keys, no whitespace); no PHI
  leaf_hash   bytea NOT NULL   -- SHA-256(0x00 || entry)
);
CREATE INDEX audit_log_type_time ON audit_log (type, recorded_at);
CREATE INDEX audit_log_time ON audit_log (recorded_at);

CREATE TABLE audit_head (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  size      bigint NOT NULL
);
INSERT INTO audit_head (size) VALUES (0);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
