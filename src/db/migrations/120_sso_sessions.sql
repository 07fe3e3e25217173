-- Single sign-on: a person signed in through the OpenID Connect issuer has an
-- account row marked sso (its password_hash is no scrypt hash, so the local
-- sign-in can never match it), and the role of each session comes from the
-- ID token of that sign-in, not from the row.
ALTER TABLE audit_users ADD COLUMN sso boolean NOT NULL DEFAULT false;
ALTER TABLE audit_sessions ADD COLUMN role text CHECK (role IN ('compliance', 'operator'));
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gateway_audit_writer') THEN
    GRANT INSERT ON audit_users TO gateway_audit_writer;
  END IF;
END $$;
