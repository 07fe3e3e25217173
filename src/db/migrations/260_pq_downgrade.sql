-- Protocol v2 downgrade decisions. A partner once seen with post-quantum keys
-- (partner_keys_seen) that no longer publishes them is 'held': its deliveries
-- sealed as v1 wait, pending, until an operator allows v1 ('allow-v1', audited
-- as partner.downgrade-decided) or PQ_DOWNGRADE=allow-v1 says so.
ALTER TABLE partners ADD COLUMN pq_downgrade text CHECK (pq_downgrade IN ('held', 'allow-v1'));
