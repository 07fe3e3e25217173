-- Response messages and processed receipts (docs/PROTOCOL.md §3.1, §12).

-- Sending side: the MessageHeader.id of a message, which a response names in
-- MessageHeader.response.identifier (an R4 id, as in exchanges.message_key).
ALTER TABLE exchanges ADD COLUMN message_header_id text;

-- Sending side: each delivery's processed receipt (the partner's signed JWS), once verified.
ALTER TABLE deliveries
  ADD COLUMN processed_receipt     text,
  ADD COLUMN processed_receipt_jti text,
  ADD COLUMN processed_at          timestamptz,   -- when the partner's EHR took it in (signed processed_at)
  ADD COLUMN processed_via         text CHECK (processed_via IN ('acknowledged', 'forwarded'));
ALTER TABLE imaging_deliveries
  ADD COLUMN processed_receipt     text,
  ADD COLUMN processed_receipt_jti text,
  ADD COLUMN processed_at          timestamptz,
  ADD COLUMN processed_via         text CHECK (processed_via IN ('acknowledged', 'forwarded'));

-- Both sides of the inbox:
--  message_header_id: a received message's MessageHeader.id, by which our EHR's response names it;
--  response_to / response_exchange / response_code: a received response to one of our deliveries
--  (the signed response_to and response_exchange claims, and MessageHeader.response.code).
ALTER TABLE inbox_messages
  ADD COLUMN message_header_id text,
  ADD COLUMN response_to       uuid,
  ADD COLUMN response_exchange uuid,
  ADD COLUMN response_code     text CHECK (response_code IN ('ok', 'transient-error', 'fatal-error')),
  ADD CONSTRAINT inbox_messages_response CHECK ((response_to IS NULL) = (response_exchange IS NULL));
CREATE INDEX inbox_messages_header ON inbox_messages (message_header_id) WHERE message_header_id IS NOT NULL;
CREATE INDEX inbox_messages_response_to ON inbox_messages (response_to) WHERE response_to IS NOT NULL;

-- Receiving side: one processed receipt per received message, signed once by the
-- job that first sends it (so every retry sends the same bytes), retried like a delivery.
CREATE TABLE processed_receipts (
  id               uuid PRIMARY KEY,          -- the receipt's jti
  message_id       uuid NOT NULL UNIQUE REFERENCES inbox_messages (id),
  partner_id       text NOT NULL,             -- the message's sender: the receipt's aud
  via              text NOT NULL CHECK (via IN ('acknowledged', 'forwarded')),
  processed_at     timestamptz NOT NULL,
  receipt          text,                      -- the signed compact JWS, once signed
  state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
  attempts         integer NOT NULL DEFAULT 0,
  round_started_at timestamptz NOT NULL DEFAULT now(),
  next_attempt_at  timestamptz,
  last_error       text,                      -- status and error codes only
  sent_at          timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX processed_receipts_state ON processed_receipts (state, updated_at);
