-- Telling the sending EHR without polling.
-- The response-url a client gave with $process-message: where its exchange's
-- state changes go as FHIR response messages (checked at intake: https, or
-- http on loopback).
ALTER TABLE exchanges ADD COLUMN response_url text;

-- One notification per (exchange event, endpoint), written on the event's own
-- transaction with its job, so no event is lost to a crash; sent and retried
-- like a delivery (src/notify/send.ts). Ids and states only, never content.
CREATE TABLE exchange_notifications (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  event_id         bigint NOT NULL REFERENCES exchange_events (id),
  channel          text NOT NULL CHECK (channel IN ('response-url')),
  endpoint         text NOT NULL,
  state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
  attempts         integer NOT NULL DEFAULT 0,
  round_started_at timestamptz NOT NULL DEFAULT now(),
  next_attempt_at  timestamptz,
  last_error       text,                      -- status and error codes only
  sent_at          timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (event_id, channel, endpoint)
);
CREATE INDEX exchange_notifications_state ON exchange_notifications (state, updated_at);
