import { describe, expect, it } from 'vitest';
import { toAuditEvent, type LogEntry } from '../../src/audit/fhir.ts';
import { r4Errors } from '../helpers/r4-validator.ts';

const observer = { org: 'Org A', baseUrl: 'https://gw.example' };
const entry = (detail: LogEntry['detail']): LogEntry => ({
  type: 'intake.refused',
  outcome: 'minor-failure',
  agent: { type: 'client', id: 'ehr-1' },
  index: 7,
  recorded: '2026-01-15T10:00:00.000Z',
  ...(detail === undefined ? {} : { detail }),
});

describe('AuditEvent: no empty strings, no empty arrays', () => {
  it('an empty detail value is left out; an empty reason gives no outcomeDesc', () => {
    const e = toAuditEvent(entry({ reason: '', route: '/exchanges', status: 400 }), observer);
    expect(e).not.toHaveProperty('outcomeDesc');
    const detail = e.entity?.find((x) => x.description === 'event detail (no PHI)')?.detail;
    expect(detail).toEqual([
      { type: 'route', valueString: '/exchanges' },
      { type: 'status', valueString: '400' },
    ]);
    expect(r4Errors(e)).toEqual([]);
  });

  it('a detail with nothing left (or an empty one) adds no detail entity', () => {
    for (const d of [{}, { reason: '' }] as Array<LogEntry['detail']>) {
      const e = toAuditEvent(entry(d), observer);
      expect(e.entity?.map((x) => x.description)).toEqual(['position in the tamper-evident audit log']);
    }
    expect(toAuditEvent(entry({ reason: 'INVALID_JSON' }), observer).outcomeDesc).toBe('INVALID_JSON');
  });
});
