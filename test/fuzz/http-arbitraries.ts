import fc from 'fast-check';
import { boundaryNumber, hostileString, nastyChar } from './arbitraries.ts';

/**
 * Query values for the read routes' parameters: near-valid forms (a real
 * date with one field out of range, a cursor with a far-away time) beside
 * hostile text.
 */

const pad = (n: number, width: number) => String(n).padStart(width, '0');

/** YYYY-MM-DD with each field anywhere from plausible to impossible. */
const dateText = fc
  .tuple(
    fc.oneof(fc.integer({ min: 1970, max: 2100 }), fc.constantFrom(0, 1, 9999, 275760)),
    fc.integer({ min: 0, max: 13 }),
    fc.integer({ min: 0, max: 32 }),
  )
  .map(([y, m, d]) => `${pad(y, 4)}-${pad(m, 2)}-${pad(d, 2)}`);

const timeText = fc
  .tuple(
    fc.integer({ min: 0, max: 25 }),
    fc.integer({ min: 0, max: 61 }),
    fc.integer({ min: 0, max: 61 }),
    fc.constantFrom('Z', '+00:00', '-14:00', '+14:00', '+99:99', ''),
  )
  .map(([h, m, s, z]) => `T${pad(h, 2)}:${pad(m, 2)}:${pad(s, 2)}${z}`);

/** A date search value: [prefix]date[time], mostly near-valid. */
export const auditDate = fc.oneof(
  fc
    .tuple(fc.constantFrom('', 'ge', 'le', 'gt', 'lt', 'eq', 'ne', 'sa'), dateText, fc.option(timeText))
    .map(([p, d, t]) => `${p}${d}${t ?? ''}`),
  hostileString,
);

const code = fc.oneof(fc.constantFrom('110100', '110114', '110112', 'intake.accepted', 'inbox.refused'), hostileString);

/** A value for one AuditEvent search parameter. */
export function auditValue(name: string): fc.Arbitrary<string> {
  switch (name) {
    case 'date':
      return auditDate;
    case 'type':
    case 'subtype':
      return fc
        .array(
          fc.oneof(
            code,
            code.map((c) => `http://dicom.nema.org/resources/ontology/DCM|${c}`),
            code.map((c) => `|${c}`),
          ),
          { minLength: 1, maxLength: 3 },
        )
        .map((a) => a.join(','));
    case 'outcome':
      return fc.oneof(fc.constantFrom('0', '4', '8', '12', 'success', 'minor-failure', '4,8', ''), hostileString);
    case 'entity':
    case 'agent':
      return fc.oneof(
        fc.tuple(fc.constantFrom('exchange|', 'delivery|', '', '|'), hostileString).map(([a, b]) => a + b),
        fc.array(nastyChar, { maxLength: 4 }).map((a) => `ex-${a.join('')}`),
      );
    case '_count':
    case '_offset':
      return fc.oneof(boundaryNumber.map(String), hostileString, fc.constantFrom('1e3', '0x10', '+5', '01'));
    default:
      return hostileString;
  }
}

/** An inbox cursor: <ISO time>_<uuid> with the time anywhere, beside hostile text. */
export const inboxCursor = fc.oneof(
  fc
    .tuple(
      fc.oneof(
        fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
        fc.constantFrom('+275760-09-13T00:00:00.000Z', '-271821-04-20T00:00:00.000Z', '0000-01-01T00:00:00Z', '1'),
        fc.integer().map(String),
        hostileString,
      ),
      fc.oneof(fc.uuid(), fc.constantFrom('00000000-0000-0000-0000-000000000000', '-'.repeat(36), 'g'.repeat(36))),
    )
    .map(([t, id]) => `${t}_${id}`),
  hostileString,
);
