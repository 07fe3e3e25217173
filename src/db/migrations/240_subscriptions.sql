-- FHIR Subscriptions (R4 Backport IG) on the exchange-state topic, and the
-- response-url of imaging exchanges.

-- A client's rest-hook subscription. Ids, codes and the endpoint only (the
-- endpoint is checked like a response-url); never content. The filter is the
-- parsed backport-filter-criteria: one exchange, and/or some event kinds.
CREATE TABLE subscriptions (
  id                 uuid PRIMARY KEY,
  client_id          text NOT NULL,
  status             text NOT NULL CHECK (status IN ('requested', 'active', 'error', 'off')),
  reason             text NOT NULL,
  endpoint           text NOT NULL,
  payload_content    text NOT NULL CHECK (payload_content IN ('id-only', 'empty')),
  heartbeat_seconds  integer CHECK (heartbeat_seconds > 0),
  filter_exchange    uuid,
  filter_events      text[],
  -- Each event notification takes the next number, on the event's transaction (under this row's lock).
  events_since_start bigint NOT NULL DEFAULT 0,
  -- When anything was last sent to it (heartbeats are due a period after this).
  last_sent_at       timestamptz,
  error              text,                    -- why it is in error: status and error codes only
  version            integer NOT NULL DEFAULT 1,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  deleted_at         timestamptz
);
CREATE INDEX subscriptions_client ON subscriptions (client_id) WHERE deleted_at IS NULL;
CREATE INDEX subscriptions_active ON subscriptions (client_id) WHERE status = 'active' AND deleted_at IS NULL;

-- Notifications to subscriptions ride the same table, job and retry rule as
-- response-url ones. A handshake or heartbeat has no exchange event; an event
-- notification carries its number. A notification for a subscription that
-- ended before it was sent is cancelled, not sent.
ALTER TABLE exchange_notifications
  ALTER COLUMN event_id DROP NOT NULL,
  ADD COLUMN subscription_id uuid REFERENCES subscriptions (id),
  ADD COLUMN type text NOT NULL DEFAULT 'event-notification'
    CHECK (type IN ('event-notification', 'handshake', 'heartbeat')),
  ADD COLUMN event_number bigint,
  DROP CONSTRAINT exchange_notifications_channel_check,
  ADD CONSTRAINT exchange_notifications_channel_check CHECK (channel IN ('response-url', 'rest-hook')),
  DROP CONSTRAINT exchange_notifications_state_check,
  ADD CONSTRAINT exchange_notifications_state_check CHECK (state IN ('pending', 'sent', 'failed', 'cancelled')),
  DROP CONSTRAINT exchange_notifications_event_id_channel_endpoint_key,
  ADD CONSTRAINT exchange_notifications_shape CHECK (
    CASE channel
      WHEN 'response-url' THEN subscription_id IS NULL AND event_id IS NOT NULL AND type = 'event-notification'
      ELSE subscription_id IS NOT NULL AND ((type = 'event-notification') = (event_id IS NOT NULL AND event_number IS NOT NULL))
    END);
CREATE UNIQUE INDEX exchange_notifications_response_url ON exchange_notifications (event_id, endpoint)
  WHERE channel = 'response-url';
CREATE UNIQUE INDEX exchange_notifications_event_number ON exchange_notifications (subscription_id, event_number)
  WHERE event_number IS NOT NULL;
CREATE INDEX exchange_notifications_subscription ON exchange_notifications (subscription_id, state)
  WHERE subscription_id IS NOT NULL;

-- An imaging exchange tells its sender by response-url too.
ALTER TABLE imaging_exchanges ADD COLUMN response_url text;

-- Who owns an exchange of either kind, and where its response-url points: what the notifications read.
CREATE VIEW exchange_owners AS
  SELECT id, client_id, response_url, message_header_id FROM exchanges
  UNION ALL
  SELECT id, client_id, response_url, NULL::text FROM imaging_exchanges;
