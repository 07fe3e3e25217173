-- Purpose of use (HL7 PurposeOfUse codes of v3-ActReason, e.g. TREAT): why records are disclosed.
-- A client's registered default, for submissions that state none ('{}': none registered, TREAT applies);
-- what each exchange was sent for; what the sender of each received message signed (NULL: the sender
-- signs no purpose, or the row predates this migration). Codes only, never PHI.
ALTER TABLE auth_clients ADD COLUMN purpose_of_use text[] NOT NULL DEFAULT '{}'
  CHECK (array_position(purpose_of_use, NULL) IS NULL);
ALTER TABLE exchanges ADD COLUMN purpose_of_use text[];
ALTER TABLE imaging_exchanges ADD COLUMN purpose_of_use text[];
ALTER TABLE inbox_messages ADD COLUMN purpose_of_use text[];
