-- Consecutive failed sign-ins to /audit/ui, per account name as typed (names
-- that do not exist are counted alike, so the answers never tell which exist).
-- Kept here, not in memory, so every API process sees the same count. Each
-- attempt is counted before the password is checked and the row is deleted
-- on success; at the lockout count the account stays locked until an
-- administrator runs `gateway audit users unlock`.
CREATE TABLE audit_login_failures (
  name            text PRIMARY KEY,
  failures        integer NOT NULL CHECK (failures > 0),
  last_failure_at timestamptz NOT NULL
);
CREATE INDEX audit_login_failures_age ON audit_login_failures (last_failure_at);

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gateway_audit_writer') THEN
    GRANT SELECT, INSERT, UPDATE, DELETE ON audit_login_failures TO gateway_audit_writer;
  END IF;
END $$;
