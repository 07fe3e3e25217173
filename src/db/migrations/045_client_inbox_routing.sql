-- Inbox routing (isolation between EHR clients): the partner ids whose received messages a
-- client may list, read and acknowledge; '*' = every partner. Empty (the
-- default, also for clients registered before this migration) = none: a
-- client sees no inbox message until an administrator routes partners to it
-- (`gateway clients update --id ID --receives-from PARTNER`), so a new or
-- upgraded client fails closed instead of seeing every received record.
ALTER TABLE auth_clients ADD COLUMN receives_from text[] NOT NULL DEFAULT '{}'
  CHECK (array_position(receives_from, NULL) IS NULL);
