-- Protocol v2 (decision 52): the gateway's post-quantum keys in the same
-- lifecycle as its HSM keys, and the downgrade hold of deliveries.

-- Two more key uses: 'pq-sig' (ML-DSA-65) and 'pq-enc' (ML-KEM-768). While the
-- token has no ML-KEM/ML-DSA mechanisms, the private key is a software seed kept
-- here only wrapped (CKM_AES_KEY_WRAP_PAD) by its own AES key on the token,
-- whose CKA_ID is hsm_id: destroying that token key destroys the seed.
ALTER TABLE gateway_keys DROP CONSTRAINT gateway_keys_use_check;
ALTER TABLE gateway_keys ADD CONSTRAINT gateway_keys_use_check
  CHECK (use IN ('sig', 'enc', 'audit', 'blinding', 'pq-sig', 'pq-enc'));
ALTER TABLE key_intents DROP CONSTRAINT key_intents_use_check;
ALTER TABLE key_intents ADD CONSTRAINT key_intents_use_check
  CHECK (use IN ('sig', 'enc', 'audit', 'blinding', 'pq-sig', 'pq-enc'));
ALTER TABLE gateway_keys ADD COLUMN wrapped_seed bytea;
ALTER TABLE gateway_keys ADD CONSTRAINT gateway_keys_wrapped_seed
  CHECK ((wrapped_seed IS NOT NULL) = (use IN ('pq-sig', 'pq-enc')));

-- The protocol version each delivery was sealed with, and why it waits if it
-- does: 'pq-downgrade' = the partner stopped publishing its post-quantum keys
-- and no v1 was allowed; the envelope (v1) is not sent until an operator says so.
ALTER TABLE deliveries ADD COLUMN protocol smallint NOT NULL DEFAULT 1 CHECK (protocol IN (1, 2)),
  ADD COLUMN held text CHECK (held IN ('pq-downgrade'));
ALTER TABLE imaging_deliveries ADD COLUMN protocol smallint NOT NULL DEFAULT 1 CHECK (protocol IN (1, 2)),
  ADD COLUMN held text CHECK (held IN ('pq-downgrade'));

-- An operator's decision about a partner that stopped publishing its
-- post-quantum keys: 'allow-v1' sends to it as v1 until its keys return,
-- 'hold' keeps its deliveries waiting. The audit log holds who decided.
CREATE TABLE partner_pq_decisions (
  partner_id  text PRIMARY KEY,
  decision    text NOT NULL CHECK (decision IN ('allow-v1', 'hold')),
  decided_by  text NOT NULL,
  decided_at  timestamptz NOT NULL
);
