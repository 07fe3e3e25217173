-- FHIR messaging semantics.
-- A partner may register the identifier (system + value) its EHRs use for the organisation,
-- e.g. an NPI or national registry id; MessageHeader receiver/sender identifiers with that
-- system match it. Without one, an identifier matches a partner by its id (value only, or
-- the system urn:fhir-gateway:partner), as before.
ALTER TABLE partners
  ADD COLUMN identifier_system text,
  ADD COLUMN identifier_value  text,
  ADD CONSTRAINT partners_identifier_pair CHECK ((identifier_system IS NULL) = (identifier_value IS NULL));
CREATE UNIQUE INDEX partners_identifier ON partners (identifier_system, identifier_value)
  WHERE identifier_system IS NOT NULL;

-- A message's own identity (Bundle.identifier system|value, else MessageHeader.id), per client:
-- a repeated message is answered with the first exchange, like a repeated Idempotency-Key.
ALTER TABLE exchanges ADD COLUMN message_key text;
CREATE UNIQUE INDEX exchanges_message_key ON exchanges (client_id, message_key) WHERE message_key IS NOT NULL;
