-- Cross-organisation delivery evidence (docs/PROTOCOL.md section 12, decision 43).
--
-- Receiver side: the leaf index of the audit entry that records each receipt we
-- signed, so a partner's evidence request finds it by receipt id. NULL for rows
-- received before this migration (their entries do not bind the receipt digest).
ALTER TABLE inbox_messages ADD COLUMN audit_idx bigint;

-- Sender side: each partner's audit log as we have verified it. One row per
-- partner: the newest checkpoint we hold, and the first inconsistency seen
-- (a forked, rewritten or shrunken history), which stays until an operator clears it.
CREATE TABLE partner_logs (
  partner_id      text PRIMARY KEY,
  origin          text NOT NULL,
  tree_size       bigint NOT NULL,
  root_hash       bytea NOT NULL,
  checked_at      timestamptz NOT NULL DEFAULT now(),
  inconsistent_at timestamptz,
  inconsistency   text
);

-- Every checkpoint of a partner we accepted, with the statement (signed by the
-- partner's signing key) that names its audit keys, the signing key that
-- verified it, and the consistency proof from the checkpoint before it.
CREATE TABLE partner_checkpoints (
  id             bigserial PRIMARY KEY,
  partner_id     text NOT NULL,
  tree_size      bigint NOT NULL,
  root_hash      bytea NOT NULL,
  note           text NOT NULL,
  keys_statement text NOT NULL,
  statement_jwk  jsonb NOT NULL,
  prev_size      bigint,
  consistency    bytea[] NOT NULL DEFAULT '{}',
  received_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX partner_checkpoints_partner ON partner_checkpoints (partner_id, tree_size);

-- The partner's proof that it logged our receipt: its audit entry (identifiers
-- and digests only), the entry's index and inclusion proof in one of its
-- checkpoints above (checkpoint_id), and the partner key that verifies the receipt. State
-- 'unknown' when the partner does not know the receipt (never proven).
CREATE TABLE delivery_evidence (
  delivery_id  uuid PRIMARY KEY,
  partner_id   text NOT NULL,
  receipt_jti  text NOT NULL,
  state        text NOT NULL CHECK (state IN ('proven', 'unknown')),
  audit_index  bigint,
  entry        text,
  checkpoint_id bigint REFERENCES partner_checkpoints (id),
  proof        bytea[],
  receipt_jwk  jsonb,
  recorded_at  timestamptz NOT NULL DEFAULT now(),
  CHECK (state = 'unknown' OR (audit_index IS NOT NULL AND entry IS NOT NULL AND checkpoint_id IS NOT NULL AND proof IS NOT NULL AND receipt_jwk IS NOT NULL))
);
CREATE INDEX delivery_evidence_partner ON delivery_evidence (partner_id);
