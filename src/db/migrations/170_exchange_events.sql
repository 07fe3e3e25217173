-- Exchange state changes, one row per event in the order they were recorded:
-- a delivery receipted (delivered), its processed receipt verified (processed),
-- a response message correlated with it (response-received), or the delivery
-- given up (failed: refused or out of attempts; expired: past DELIVERY_HORIZON).
-- Written on the transaction that makes the change (src/outbound/exchange-events.ts);
-- ids and codes only, never content, so whatever tells the sending EHR reads it as it is.
CREATE TABLE exchange_events (
  id           bigserial PRIMARY KEY,
  exchange_id  uuid NOT NULL,              -- exchanges or imaging_exchanges (no FK: either table)
  delivery_id  uuid,
  kind         text NOT NULL CHECK (kind IN ('delivered', 'processed', 'response-received', 'failed', 'expired')),
  at           timestamptz NOT NULL,
  detail       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX exchange_events_exchange ON exchange_events (exchange_id, id);
