-- Imaging: DICOM studies travel as a streamed compact JWE per
-- recipient, kept as a FILE under DATA_DIR/imaging (sealed: no plaintext at
-- rest), plus a signed manifest sealed as a normal envelope. The database
-- holds metadata, digests and file paths only: no UIDs, no patient ids.

CREATE TABLE imaging_exchanges (
  id               uuid PRIMARY KEY,
  client_id        text NOT NULL,
  content_type     text NOT NULL,           -- application/dicom, or multipart/related; type="application/dicom"; boundary=...
  instances        integer NOT NULL,
  content_length   bigint NOT NULL,         -- plaintext bytes (DICOM, or the multipart framing of several instances)
  content_digest   text NOT NULL,           -- "sha-256=" + base64url of the plaintext
  idempotency_key  text,
  created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX imaging_exchanges_idempotency ON imaging_exchanges (client_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE imaging_deliveries (
  id                  uuid PRIMARY KEY,     -- = the manifest's jti and the Idempotency-Key sent
  exchange_id         uuid NOT NULL REFERENCES imaging_exchanges (id),
  partner_id          text NOT NULL,
  recipient_kid       text NOT NULL,
  announcement        text NOT NULL,        -- signed JWS {iss, aud, iat, jti, exchange}: ids only, sent first
  manifest_envelope   text NOT NULL,        -- compact JWE of the signed manifest
  manifest_digest     text NOT NULL,        -- "sha-256=" + base64url of the manifest envelope (the receipt's digest)
  content_path        text NOT NULL,        -- the streamed compact JWE of the content, under DATA_DIR/imaging/outbound
  content_jwe_length  bigint NOT NULL,
  state               text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
  attempts            integer NOT NULL DEFAULT 0,
  round_attempts      integer NOT NULL DEFAULT 0,
  round_started_at    timestamptz NOT NULL DEFAULT now(),
  next_attempt_at     timestamptz,
  last_error          text,                 -- status and error codes only
  receipt             text,
  receipt_jti         text,
  delivered_at        timestamptz,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX imaging_deliveries_exchange ON imaging_deliveries (exchange_id);
CREATE INDEX imaging_deliveries_state ON imaging_deliveries (state, updated_at);

CREATE TABLE imaging_delivery_attempts (
  id           bigserial PRIMARY KEY,
  delivery_id  uuid NOT NULL REFERENCES imaging_deliveries (id),
  attempt      integer NOT NULL,
  started_at   timestamptz NOT NULL,
  duration_ms  integer NOT NULL,
  outcome      text NOT NULL CHECK (outcome IN ('delivered', 'transient', 'permanent', 'invalid-receipt')),
  http_status  integer,
  error        text
);
CREATE INDEX imaging_delivery_attempts_delivery ON imaging_delivery_attempts (delivery_id, attempt);

-- Receiving side: the inbox row (inbox_messages) holds the manifest envelope
-- exactly as received; this row points at the content JWE as received (still
-- sealed to our HSM key), verified (tag, digest, length) before it was stored.
CREATE TABLE imaging_inbox_content (
  message_id          uuid PRIMARY KEY REFERENCES inbox_messages (id),
  content_type        text NOT NULL,
  content_path        text NOT NULL,        -- under DATA_DIR/imaging/inbox
  content_length      bigint NOT NULL,
  content_jwe_length  bigint NOT NULL
);
