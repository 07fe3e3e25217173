import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import type { AuditInput } from '../../src/audit/append.ts';
import { AUDIT_EVENTS } from '../../src/audit/events.ts';
import { AUDIT_DOC, auditCatalogueTable, CATALOGUE_BLOCK } from '../../scripts/audit-catalogue.ts';

describe('audit event catalogue', () => {
  it('docs/AUDIT.md lists every audit event type exactly as src/audit/events.ts defines it', () => {
    const block = CATALOGUE_BLOCK.exec(readFileSync(AUDIT_DOC, 'utf8'))?.[2];
    // Regenerate with: npm run docs:audit
    expect(block).toBe(auditCatalogueTable());
  });

  it('has one row per event type, each with a description and at least one outcome', () => {
    const types = Object.keys(AUDIT_EVENTS);
    expect(auditCatalogueTable().split('\n')).toHaveLength(types.length + 2);
    for (const [type, e] of Object.entries(AUDIT_EVENTS)) {
      expect(type).toMatch(/^[a-z]+(-[a-z]+)*\.[a-z]+(-[a-z]+)*$/);
      expect(e.description.length).toBeGreaterThan(0);
      expect(e.outcome.length).toBeGreaterThan(0);
    }
  });

  it('types appendAudit entries by the catalogue (the type check refuses an unknown type)', () => {
    // @ts-expect-error 'inbox.received' is not in AUDIT_EVENTS; tsc fails if this line ever type-checks.
    const unknown: AuditInput = { type: 'inbox.received', outcome: 'success' };
    const known: AuditInput = { type: 'inbox.accepted', outcome: 'success' };
    expect(unknown.type in AUDIT_EVENTS).toBe(false);
    expect(known.type in AUDIT_EVENTS).toBe(true);
  });
});
