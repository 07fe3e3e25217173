import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import type { AuditInput } from '../../src/audit/append.ts';
import { AUDIT_EVENTS } from '../../src/audit/events.ts';
import { PATTERNS, type Pattern } from '../../src/audit/balp/patterns.ts';
import { AUDIT_DOC, auditCatalogueTable, CATALOGUE_BLOCK } from '../../scripts/audit-catalogue.ts';

/** Every profile BALP 1.1.4 defines (its Audit Creator CapabilityStatement lists them); IHE.BasicAudit.Minimal is not one. */
const BALP_PROFILES = [
  'IHE.BasicAudit.Create',
  'IHE.BasicAudit.Read',
  'IHE.BasicAudit.Update',
  'IHE.BasicAudit.Delete',
  'IHE.BasicAudit.Query',
  'IHE.BasicAudit.PatientCreate',
  'IHE.BasicAudit.PatientRead',
  'IHE.BasicAudit.PatientUpdate',
  'IHE.BasicAudit.PatientDelete',
  'IHE.BasicAudit.PatientQuery',
  'IHE.IUA.71',
  'IHE.BasicAudit.OAUTHaccessTokenUse.Comprehensive',
  'IHE.BasicAudit.OAUTHaccessTokenUse.Minimal',
  'IHE.BasicAudit.OAUTHaccessTokenUse.Opaque',
  'IHE.BasicAudit.SAMLaccessTokenUse.Comprehensive',
  'IHE.BasicAudit.SAMLaccessTokenUse.Minimal',
  'IHE.BasicAudit.AuthZconsent',
  'IHE.BasicAudit.PrivacyDisclosure.Recipient',
  'IHE.BasicAudit.PrivacyDisclosure.Source',
];

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

  it('names for each type the BALP profile it follows, and only profiles BALP defines', () => {
    const rows = auditCatalogueTable().split('\n');
    for (const [type, e] of Object.entries(AUDIT_EVENTS)) {
      const p: Pattern = PATTERNS[e.balp];
      const row = rows.find((r) => r.startsWith(`| \`${type}\` |`));
      const claims = !row?.includes('never claimed');
      for (const id of [p.profile, claims ? p.patientProfile : undefined].filter((x) => x !== undefined)) {
        expect(BALP_PROFILES, type).toContain(id);
        expect(row, type).toContain(`\`${id}\``);
      }
      if (!p.profile) expect(row?.split(' | ')[1], type).toBe('none');
      // A type that is only ever a failure of a profile fixing success is said never to claim it.
      if (p.successOnly && !e.outcome.includes('success' as never)) expect(claims, type).toBe(false);
    }
    // The exchange itself: sends and receives are disclosures, reads and creates the RESTful patterns.
    expect(PATTERNS[AUDIT_EVENTS['delivery.attempt'].balp]).toMatchObject({
      profile: 'IHE.BasicAudit.PrivacyDisclosure.Source',
    });
    expect(PATTERNS[AUDIT_EVENTS['inbox.accepted'].balp]).toMatchObject({
      profile: 'IHE.BasicAudit.PrivacyDisclosure.Recipient',
    });
    expect(PATTERNS[AUDIT_EVENTS['inbox.read'].balp]).toMatchObject({ patientProfile: 'IHE.BasicAudit.PatientRead' });
  });

  it('types appendAudit entries by the catalogue (the type check refuses an unknown type)', () => {
    // @ts-expect-error 'inbox.received' is not in AUDIT_EVENTS; tsc fails if this line ever type-checks.
    const unknown: AuditInput = { type: 'inbox.received', outcome: 'success' };
    const known: AuditInput = { type: 'inbox.accepted', outcome: 'success' };
    expect(unknown.type in AUDIT_EVENTS).toBe(false);
    expect(known.type in AUDIT_EVENTS).toBe(true);
  });
});
