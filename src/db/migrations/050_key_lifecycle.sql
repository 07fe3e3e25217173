-- Key lifecycle: the rotation state machine's intents, and the
-- partner key-transparency log.

-- A rotation step that touches the HSM and the database cannot be one
-- transaction. Before the HSM call we commit an intent (the label the new key
-- will carry, or the key about to be destroyed); a rerun after a crash finds
-- the intent and completes the step: it adopts a key already generated under
-- that label (no orphan left on the token) or destroys again (idempotent).
CREATE TABLE key_intents (
  use        text NOT NULL CHECK (use IN ('sig', 'enc', 'audit')),
  action     text NOT NULL CHECK (action IN ('generate', 'destroy')),
  label      text,                                   -- generate: CKA_LABEL of the key being made
  kid        text REFERENCES gateway_keys (kid),     -- destroy: the key being destroyed
  activate   boolean NOT NULL DEFAULT false,         -- generate: activate at once (rotate --now, first run)
  started_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (use, action),
  CHECK ((action = 'generate') = (label IS NOT NULL)),
  CHECK ((action = 'destroy') = (kid IS NOT NULL))
);

-- Every key a partner has published, as we observed it (key transparency).
-- The JWK is kept so signatures by retired partner keys stay verifiable.
CREATE TABLE partner_keys_seen (
  partner_id     text NOT NULL,                      -- no FK: history outlives a partner's removal
  kid            text NOT NULL,
  thumbprint     text NOT NULL,                      -- RFC 7638 of the JWK seen under this kid
  use            text,
  jwk            jsonb NOT NULL,                     -- public members only (checked on fetch)
  first_seen     timestamptz NOT NULL DEFAULT now(),
  last_seen      timestamptz NOT NULL DEFAULT now(),
  disappeared_at timestamptz,                        -- set when a refresh no longer lists it
  replaced_at    timestamptz,                        -- set when the same kid later carried other content
  PRIMARY KEY (partner_id, kid, thumbprint)
);
CREATE INDEX partner_keys_seen_kid ON partner_keys_seen (partner_id, kid);

-- When each partner's JWKS was last refreshed by the job (PARTNER_JWKS_REFRESH).
CREATE TABLE partner_jwks_checks (
  partner_id  text PRIMARY KEY,
  checked_at  timestamptz NOT NULL,
  ok          boolean NOT NULL,
  error       text                                   -- a short reason, never content
);
