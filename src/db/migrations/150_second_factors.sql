-- Second factors of the local accounts (passkeys, TOTP, recovery codes) and the
-- HSM secret key that encrypts TOTP secrets. Nothing here lets a database
-- reader sign in: passkeys are public keys, TOTP secrets are AES-GCM
-- ciphertext under a key that never leaves the HSM, recovery codes are hashes.

-- HSM secret (AES) keys by purpose: the row names the key on the token by
-- CKA_ID; the boot refuses to start when the token does not hold it.
CREATE TABLE gateway_secret_keys (
  purpose    text PRIMARY KEY CHECK (purpose IN ('factor-secrets')),
  hsm_id     text NOT NULL UNIQUE,          -- CKA_ID, hex
  label      text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- A session is full, or pending after the password: 'second-factor' (the
-- account has a factor to use) or 'enrol' (MFA_REQUIRED and no factor yet).
-- Only the second-factor step or an enrolment turns a pending session into a
-- full one, under a new cookie.
ALTER TABLE audit_sessions
  ADD COLUMN stage text NOT NULL DEFAULT 'full' CHECK (stage IN ('full', 'second-factor', 'enrol'));

-- WebAuthn credentials: the public key (COSE) and the last signature counter seen.
CREATE TABLE mfa_passkeys (
  credential_id text PRIMARY KEY,          -- base64url, as the authenticator made it
  user_name     text NOT NULL REFERENCES audit_users(name),
  user_handle   bytea NOT NULL,            -- random, the same for every passkey of one account
  public_key    bytea NOT NULL,            -- COSE_Key
  sign_count    bigint NOT NULL CHECK (sign_count >= 0),
  transports    text[] NOT NULL DEFAULT '{}',
  backed_up     boolean NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_used_at  timestamptz
);
CREATE INDEX mfa_passkeys_user ON mfa_passkeys (user_name);

-- One TOTP authenticator per account: the secret as AES-GCM ciphertext (tag
-- appended) and its IV, under the 'factor-secrets' key, bound to the account
-- name as associated data. Active once a first code confirmed it; last_step
-- is the last accepted RFC 6238 time step, so a code is used at most once.
CREATE TABLE mfa_totp (
  user_name    text PRIMARY KEY REFERENCES audit_users(name),
  secret_ct    bytea NOT NULL,
  secret_iv    bytea NOT NULL CHECK (length(secret_iv) = 12),
  confirmed_at timestamptz,
  last_step    bigint,
  created_at   timestamptz NOT NULL DEFAULT now()
);

-- One-time recovery codes, SHA-256 of 80 random bits each, shown once.
CREATE TABLE mfa_recovery_codes (
  user_name  text NOT NULL REFERENCES audit_users(name),
  code_hash  bytea NOT NULL,
  used_at    timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_name, code_hash)
);

-- WebAuthn challenges, each used once: bound to the pending or full session
-- that asked for it (none for a passkey sign-in, which has no session yet).
CREATE TABLE mfa_challenges (
  challenge    text PRIMARY KEY,
  purpose      text NOT NULL CHECK (purpose IN ('registration', 'authentication')),
  session_hash bytea,
  user_handle  bytea,                     -- a registration's WebAuthn user handle, kept with its first passkey
  expires_at   timestamptz NOT NULL
);
CREATE INDEX mfa_challenges_expiry ON mfa_challenges (expires_at);

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gateway_audit_writer') THEN
    GRANT SELECT, INSERT, UPDATE, DELETE ON mfa_passkeys, mfa_totp, mfa_recovery_codes, mfa_challenges
      TO gateway_audit_writer;
    GRANT SELECT ON gateway_secret_keys TO gateway_audit_writer;
  END IF;
END $$;
