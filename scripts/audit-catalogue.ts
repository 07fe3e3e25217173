// Rewrites the audit event catalogue in docs/AUDIT.md from AUDIT_EVENTS in src/audit/events.ts.
// Run: npm run docs:audit (test/unit/audit-catalogue.test.ts fails while the two differ).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AUDIT_EVENTS } from '../src/audit/events.ts';
import { dicomType } from '../src/audit/fhir.ts';

export const AUDIT_DOC = join(import.meta.dirname, '..', 'docs', 'AUDIT.md');
export const CATALOGUE_BLOCK = /(<!-- audit-events:start -->\n)([\s\S]*?)\n?(<!-- audit-events:end -->)/;

/** One row per event type, in the order of the constant (grouped by pipeline). */
export function auditCatalogueTable(): string {
  const rows = Object.entries(AUDIT_EVENTS).map(([type, e]) => {
    const dicom = dicomType(type);
    return `| \`${type}\` | ${dicom.code} ${dicom.display} | ${e.outcome.join(', ')} | ${e.recordedBy} | ${e.description} |`;
  });
  return [
    '| type | DICOM event type | outcome | recorded by | what it records |',
    '|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}

if (import.meta.main) {
  const doc = readFileSync(AUDIT_DOC, 'utf8');
  if (!CATALOGUE_BLOCK.test(doc)) throw new Error('docs/AUDIT.md has no audit-events block');
  writeFileSync(AUDIT_DOC, doc.replace(CATALOGUE_BLOCK, `$1${auditCatalogueTable()}\n$3`));
}
