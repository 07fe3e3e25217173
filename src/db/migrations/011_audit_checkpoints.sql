-- Signed checkpoints (C2SP tlog-checkpoint notes signed by the HSM audit key),
-- each with the RFC 9162 consistency proof from the previous one.
CREATE TABLE audit_checkpoints (
  seq          bigint PRIMARY KEY,            -- 0, 1, 2... in issue order
  tree_size    bigint NOT NULL CHECK (tree_size > 0),
  root_hash    bytea NOT NULL,
  note         text NOT NULL,                 -- the signed note, verbatim
  key_kid      text NOT NULL,                 -- gateway_keys.kid of the audit key that signed it
  issued_at    timestamptz NOT NULL DEFAULT now(),
  prev_size    bigint,                        -- tree size of checkpoint seq-1 (NULL for the first)
  consistency  bytea[] NOT NULL DEFAULT '{}'  -- PROOF(prev_size, D[tree_size])
);
CREATE INDEX audit_checkpoints_size ON audit_checkpoints (tree_size);

-- Hashes of complete, aligned blocks of 256 leaves (block b = leaves [256b, 256b+256)).
-- A cache that makes proofs O(n/256 + log n) reads instead of O(n); it is
-- derived data: a wrong tile makes proofs fail verification, never pass.
CREATE TABLE audit_tiles (
  block bigint PRIMARY KEY,
  hash  bytea NOT NULL
);

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE OR DELETE ON audit_checkpoints FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_tiles_no_update BEFORE UPDATE OR DELETE ON audit_tiles FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_tiles_no_truncate BEFORE TRUNCATE ON audit_tiles FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Compliance officers of the audit web page (/audit/ui). Passwords scrypt-hashed;
-- sessions stored as SHA-256 of the cookie value, so a database read gives no session.
CREATE TABLE audit_users (
  name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9._@-]{1,64}$'),
  password_hash text NOT NULL,               -- scrypt$N$r$p$salt$hash (base64)
  created_at    timestamptz NOT NULL DEFAULT now(),
  disabled_at   timestamptz
);
CREATE TABLE audit_sessions (
  token_hash bytea PRIMARY KEY,
  user_name  text NOT NULL REFERENCES audit_users(name),
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);

-- Database privileges. The trigger stops accidents and the application role;
-- it does not stop a superuser or the table owner (they can drop it). That is
-- why checkpoints are signed by an HSM key and verified offline.
-- gateway_audit_writer is the privilege set an application login role should
-- hold for the audit tables: read and append, never rewrite.
REVOKE ALL ON audit_log, audit_head, audit_checkpoints, audit_tiles FROM PUBLIC;
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gateway_audit_writer') THEN
      CREATE ROLE gateway_audit_writer NOLOGIN;
    END IF;
    GRANT SELECT, INSERT ON audit_log, audit_checkpoints, audit_tiles TO gateway_audit_writer;
    GRANT SELECT, UPDATE (size) ON audit_head TO gateway_audit_writer;
    GRANT SELECT, INSERT, DELETE ON audit_sessions TO gateway_audit_writer;
    GRANT SELECT ON audit_users TO gateway_audit_writer;
    REVOKE UPDATE, DELETE, TRUNCATE ON audit_log, audit_checkpoints, audit_tiles FROM gateway_audit_writer;
  ELSE
    RAISE NOTICE 'not allowed to create roles; create gateway_audit_writer as in docs/AUDIT.md';
  END IF;
END $$;
