-- The gateway's own keys. Private halves live in the HSM (addressed by
-- CKA_ID); this table is the inventory and the lifecycle state machine
-- (NIST SP 800-57: pre-activation -> active -> deactivated -> destroyed).
CREATE TABLE gateway_keys (
  kid            text PRIMARY KEY,             -- RFC 7638 thumbprint
  use            text NOT NULL CHECK (use IN ('sig', 'enc', 'audit')),
  alg            text NOT NULL,
  hsm_id         text NOT NULL UNIQUE,         -- CKA_ID, hex
  label          text NOT NULL,
  public_jwk     jsonb NOT NULL,
  state          text NOT NULL CHECK (state IN ('pre-activation', 'active', 'deactivated', 'destroyed')),
  created_at     timestamptz NOT NULL DEFAULT now(),
  published_at   timestamptz,
  activated_at   timestamptz,
  deactivated_at timestamptz,
  destroyed_at   timestamptz
);
-- Exactly one active key per use is enforced by the database itself.
CREATE UNIQUE INDEX gateway_keys_one_active ON gateway_keys (use) WHERE state = 'active';
