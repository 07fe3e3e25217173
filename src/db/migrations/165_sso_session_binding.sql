-- A single sign-on session is bound to the issuer's session: the ID token's
-- iss, sub and sid are kept with the gateway session, so that the issuer's
-- back-channel logout (a signed logout token naming the sid, or the sub)
-- ends it. Local (break-glass) sessions have none and are never matched.
ALTER TABLE audit_sessions
  ADD COLUMN sso_issuer text,
  ADD COLUMN sso_subject text,
  ADD COLUMN sso_sid text;
CREATE INDEX audit_sessions_sso_sid ON audit_sessions (sso_issuer, sso_sid) WHERE sso_sid IS NOT NULL;
CREATE INDEX audit_sessions_sso_subject ON audit_sessions (sso_issuer, sso_subject) WHERE sso_subject IS NOT NULL;

-- Every logout token jti taken, per issuer, kept while a token with it could
-- still be accepted (replay protection).
CREATE TABLE sso_logout_jtis (
  issuer     text NOT NULL,
  jti        text NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (issuer, jti)
);
CREATE INDEX sso_logout_jtis_expiry ON sso_logout_jtis (expires_at);

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gateway_audit_writer') THEN
    GRANT SELECT, INSERT, DELETE ON sso_logout_jtis TO gateway_audit_writer;
  END IF;
END $$;
