-- Outbound exchange: partner directory, exchanges, deliveries and
-- their attempts. Deliveries hold only the sealed envelope (compact JWE):
-- no plaintext bundle is ever stored.

-- A partner is a FHIR Organization (id, name, status) with one Endpoint
-- (address = inbox URL, connectionType hl7-fhir-msg, keys by JWKS URI or inline).
CREATE TABLE partners (
  id          text PRIMARY KEY,            -- Organization.identifier.value agreed in the directory
  name        text NOT NULL,
  endpoint    text NOT NULL UNIQUE,        -- Endpoint.address: the partner's inbox URL
  jwks_uri    text,
  jwks        jsonb,                       -- inline JWKS (public keys only)
  status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  CHECK ((jwks_uri IS NULL) <> (jwks IS NULL))
);

CREATE TABLE exchanges (
  id               uuid PRIMARY KEY,
  client_id        text NOT NULL,          -- the authenticated sending client ('' when auth is off)
  bundle_type      text NOT NULL,
  content_digest   text NOT NULL,          -- sha-256 of the accepted bytes (no content)
  content_length   integer NOT NULL,
  idempotency_key  text,
  created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX exchanges_idempotency ON exchanges (client_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX exchanges_client_time ON exchanges (client_id, created_at);

CREATE TABLE deliveries (
  id               uuid PRIMARY KEY,       -- = the signed claims' jti and the Idempotency-Key sent
  exchange_id      uuid NOT NULL REFERENCES exchanges (id),
  partner_id       text NOT NULL,          -- no FK: history outlives a partner's removal
  recipient_kid    text NOT NULL,
  envelope         text NOT NULL,          -- compact JWE, the only copy of the content
  envelope_digest  text NOT NULL,          -- "sha-256=" + base64url, as in the receipt
  state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
  attempts         integer NOT NULL DEFAULT 0,   -- all attempts ever (numbers delivery_attempts)
  round_attempts   integer NOT NULL DEFAULT 0,   -- attempts since acceptance or the last operator retry (DELIVERY_MAX_ATTEMPTS)
  round_started_at timestamptz NOT NULL DEFAULT now(), -- start of the DELIVERY_HORIZON window
  next_attempt_at  timestamptz,
  last_error       text,                   -- no PHI: status codes and error codes only
  receipt          text,                   -- the recipient's compact JWS receipt
  receipt_jti      text,
  delivered_at     timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);
-- Ciphertext does not compress: store it out of line without trying (saves PostgreSQL CPU per intake).
ALTER TABLE deliveries ALTER COLUMN envelope SET STORAGE EXTERNAL;
CREATE INDEX deliveries_exchange ON deliveries (exchange_id);
CREATE INDEX deliveries_state ON deliveries (state, updated_at);

CREATE TABLE delivery_attempts (
  id           bigserial PRIMARY KEY,
  delivery_id  uuid NOT NULL REFERENCES deliveries (id),
  attempt      integer NOT NULL,
  started_at   timestamptz NOT NULL,
  duration_ms  integer NOT NULL,
  outcome      text NOT NULL CHECK (outcome IN ('delivered', 'transient', 'permanent', 'invalid-receipt')),
  http_status  integer,
  error        text
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt);
