-- Retention: sealed content past its retention period is purged, and its row
-- stays as a tombstone. Ids, digests, receipts and attempts are kept (they
-- hold no PHI and the audit log, the evidence and the status views point at
-- them); the envelope is set to NULL and the imaging file removed. A read of
-- purged content answers 410 Gone.
ALTER TABLE deliveries ALTER COLUMN envelope DROP NOT NULL, ADD COLUMN purged_at timestamptz;
ALTER TABLE imaging_deliveries ALTER COLUMN manifest_envelope DROP NOT NULL, ADD COLUMN purged_at timestamptz;
ALTER TABLE inbox_messages ALTER COLUMN envelope DROP NOT NULL, ADD COLUMN purged_at timestamptz;

-- Content is gone exactly when the row says it was purged.
ALTER TABLE deliveries ADD CONSTRAINT deliveries_purged
  CHECK ((envelope IS NULL) = (purged_at IS NOT NULL)) NOT VALID;
ALTER TABLE deliveries VALIDATE CONSTRAINT deliveries_purged;
ALTER TABLE imaging_deliveries ADD CONSTRAINT imaging_deliveries_purged
  CHECK ((manifest_envelope IS NULL) = (purged_at IS NOT NULL)) NOT VALID;
ALTER TABLE imaging_deliveries VALIDATE CONSTRAINT imaging_deliveries_purged;
ALTER TABLE inbox_messages ADD CONSTRAINT inbox_messages_purged
  CHECK ((envelope IS NULL) = (purged_at IS NOT NULL)) NOT VALID;
ALTER TABLE inbox_messages VALIDATE CONSTRAINT inbox_messages_purged;
-- Only what was handed over may be purged: a delivered delivery, a message the EHR took.
ALTER TABLE deliveries ADD CONSTRAINT deliveries_purged_delivered
  CHECK (purged_at IS NULL OR state = 'delivered') NOT VALID;
ALTER TABLE deliveries VALIDATE CONSTRAINT deliveries_purged_delivered;
ALTER TABLE imaging_deliveries ADD CONSTRAINT imaging_deliveries_purged_delivered
  CHECK (purged_at IS NULL OR state = 'delivered') NOT VALID;
ALTER TABLE imaging_deliveries VALIDATE CONSTRAINT imaging_deliveries_purged_delivered;
ALTER TABLE inbox_messages ADD CONSTRAINT inbox_messages_purged_handed_over
  CHECK (purged_at IS NULL OR state IN ('forwarded', 'acknowledged')) NOT VALID;
ALTER TABLE inbox_messages VALIDATE CONSTRAINT inbox_messages_purged_handed_over;

-- The retention job's scans: what is still held and past its time, oldest first.
CREATE INDEX deliveries_retention ON deliveries (delivered_at) WHERE state = 'delivered' AND purged_at IS NULL;
CREATE INDEX imaging_deliveries_retention ON imaging_deliveries (delivered_at)
  WHERE state = 'delivered' AND purged_at IS NULL;
CREATE INDEX inbox_messages_retention ON inbox_messages ((coalesce(acknowledged_at, forwarded_at)))
  WHERE state IN ('forwarded', 'acknowledged') AND purged_at IS NULL;

-- A legal hold: an exchange kept whatever its age, until released. On the sending side
-- it names our exchange id; on the receiving side the sender's, as its messages carry it.
CREATE TABLE retention_holds (
  exchange_id  text PRIMARY KEY,
  held_by      text NOT NULL,
  held_at      timestamptz NOT NULL DEFAULT now()
);
