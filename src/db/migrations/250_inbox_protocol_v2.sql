-- Protocol v2 messages received (PROTOCOL.md §14): the sender's ML-DSA-65 key
-- that verified the second signature, kept so that a read re-verifies both.
-- One row per key (about 2.6 KB), named by its RFC 7638 thumbprint, rather
-- than a copy in every message: a message row stays small enough to keep its
-- receipt in line (270), and retention can return its envelope's space.
-- sender_pq_key NULL: a v1 message, signed once.
CREATE TABLE inbox_sender_pq_keys (
  thumbprint text PRIMARY KEY,
  jwk        jsonb NOT NULL
);
ALTER TABLE inbox_messages ADD COLUMN sender_pq_key text REFERENCES inbox_sender_pq_keys (thumbprint);
