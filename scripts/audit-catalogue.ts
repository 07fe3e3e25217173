// Rewrites the audit event catalogue in docs/AUDIT.md from AUDIT_EVENTS in src/audit/events.ts
// and the BALP patterns in src/audit/balp/patterns.ts.
// Run: npm run docs:audit (test/unit/audit-catalogue.test.ts fails while the two differ).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AUDIT_EVENTS } from '../src/audit/events.ts';
import { PATTERNS, type Pattern } from '../src/audit/balp/patterns.ts';

export const AUDIT_DOC = join(import.meta.dirname, '..', 'docs', 'AUDIT.md');
export const CATALOGUE_BLOCK = /(<!-- audit-events:start -->\n)([\s\S]*?)\n?(<!-- audit-events:end -->)/;

/** The profile column: what an entry of the pattern claims in meta.profile, and when. */
export function profileCell(p: Pattern, outcomes: readonly string[]): string {
  if (!p.profile) return 'none';
  const id = (name: string) => `\`${name}\``;
  if (p.neverClaimed) return `${id(p.profile)} pattern, never claimed`;
  if (p.successOnly && !outcomes.includes('success')) return `${id(p.profile)} pattern, never claimed (a failure)`;
  const variant = p.patientProfile ? `${id(p.patientProfile)} (one patient), else ` : '';
  const claim = p.needsPatient ? `${id(p.profile)} (one patient)` : `${variant}${id(p.profile)}`;
  return p.successOnly && outcomes.length > 1 ? `${claim}; on success` : claim;
}

const codes = (p: Pattern) =>
  [p.type, ...p.subtype].map((c) => `${c.code}${c.display && c.display !== c.code ? ` ${c.display}` : ''}`).join(' / ');

/** One row per event type, in the order of the constant (grouped by pipeline). */
export function auditCatalogueTable(): string {
  const rows = Object.entries(AUDIT_EVENTS).map(([type, e]) => {
    const p: Pattern = PATTERNS[e.balp];
    return `| \`${type}\` | ${profileCell(p, e.outcome)} | ${codes(p)} | ${p.action} | ${e.outcome.join(', ')} | ${e.recordedBy} | ${e.description} |`;
  });
  return [
    '| type | BALP profile | type / subtypes | action | outcome | recorded by | what it records |',
    '|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}

if (import.meta.main) {
  const doc = readFileSync(AUDIT_DOC, 'utf8');
  if (!CATALOGUE_BLOCK.test(doc)) throw new Error('docs/AUDIT.md has no audit-events block');
  writeFileSync(AUDIT_DOC, doc.replace(CATALOGUE_BLOCK, `$1${auditCatalogueTable()}\n$3`));
}
