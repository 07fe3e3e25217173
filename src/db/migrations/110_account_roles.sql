-- One role per local account of the browser pages: 'compliance' reads the audit
-- trail (/audit/ui), 'operator' runs deliveries and partners (/console). Existing
-- accounts were compliance officers, so that is the default.
ALTER TABLE audit_users
  ADD COLUMN role text NOT NULL DEFAULT 'compliance' CHECK (role IN ('compliance', 'operator'));
