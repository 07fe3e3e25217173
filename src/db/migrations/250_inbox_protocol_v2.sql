-- Protocol v2 messages received (PROTOCOL.md §14): the sender's ML-DSA-65 key
-- that verified the second signature, kept beside sender_jwk (its ES256 key)
-- so that a read re-verifies both. NULL: a v1 message, signed once.
ALTER TABLE inbox_messages ADD COLUMN sender_pq_jwk jsonb;
