-- Inbound exchange: envelopes received on POST /inbox, stored
-- exactly as received (still sealed to our HSM-held key: no plaintext at
-- rest), with the receipt we signed and the hand-over state for the local EHR.
CREATE TABLE inbox_messages (
  id               uuid PRIMARY KEY,
  sender           text NOT NULL,             -- iss: the partner organisation id
  jti              text NOT NULL,             -- the delivery id the sender chose
  exchange_id      text NOT NULL,             -- the sender's exchange id
  envelope         text NOT NULL,             -- compact JWE exactly as received
  envelope_digest  text NOT NULL,             -- "sha-256=" + base64url, as in the receipt
  enc_kid          text NOT NULL,             -- our key that opens it
  sender_kid       text NOT NULL,
  sender_jwk       jsonb NOT NULL,            -- the public key that verified it, to re-verify on read
  receipt_id       uuid NOT NULL UNIQUE,
  receipt          text NOT NULL,             -- our signed receipt (compact JWS), answered again on duplicates
  state            text NOT NULL DEFAULT 'received' CHECK (state IN ('received', 'forwarded', 'acknowledged')),
  received_at      timestamptz NOT NULL DEFAULT now(),
  forwarded_at     timestamptz,
  acknowledged_at  timestamptz,
  acknowledged_by  text,                      -- the client id that acknowledged
  forward_attempts integer NOT NULL DEFAULT 0,
  forward_error    text                       -- status or error code only, no content
);
-- The replay check: one delivery id per sender.
CREATE UNIQUE INDEX inbox_messages_sender_jti ON inbox_messages (sender, jti);
CREATE INDEX inbox_messages_state_time ON inbox_messages (state, received_at);
CREATE INDEX inbox_messages_time ON inbox_messages (received_at);
-- Ciphertext does not compress: store it out of line without trying (saves CPU per receive).
ALTER TABLE inbox_messages ALTER COLUMN envelope SET STORAGE EXTERNAL;
