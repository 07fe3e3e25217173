-- SMART Backend Services clients, their access tokens and assertion replay guard.
CREATE TABLE auth_clients (
  id          text PRIMARY KEY,
  name        text NOT NULL,
  jwks        jsonb,            -- inline public JWKS, or
  jwks_uri    text,             -- where the client publishes it (exactly one of the two)
  scopes      text[] NOT NULL,  -- scopes the client may request
  enabled     boolean NOT NULL DEFAULT true,
  rate_limit  integer,          -- requests per minute; NULL = RATE_LIMIT
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  disabled_at timestamptz,
  CHECK ((jwks IS NULL) <> (jwks_uri IS NULL))
);

-- Opaque bearer tokens, stored as SHA-256 of the token: a database leak yields no usable token.
CREATE TABLE auth_access_tokens (
  token_hash bytea PRIMARY KEY,
  client_id  text NOT NULL REFERENCES auth_clients (id) ON DELETE CASCADE,
  scopes     text[] NOT NULL,
  issued_at  timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX auth_access_tokens_expiry ON auth_access_tokens (expires_at);
CREATE INDEX auth_access_tokens_client ON auth_access_tokens (client_id);

-- Every client assertion jti seen, kept until the assertion expires (replay protection).
CREATE TABLE auth_assertion_jtis (
  client_id  text NOT NULL,
  jti        text NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (client_id, jti)
);
CREATE INDEX auth_assertion_jtis_expiry ON auth_assertion_jtis (expires_at);

-- Mutual TLS on /inbox: a peer certificate (SHA-256 of its DER) bound to a partner id.
CREATE TABLE partner_tls_bindings (
  cert_sha256 text PRIMARY KEY CHECK (cert_sha256 ~ '^[0-9a-f]{64}$'),
  partner_id  text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX partner_tls_bindings_partner ON partner_tls_bindings (partner_id);
