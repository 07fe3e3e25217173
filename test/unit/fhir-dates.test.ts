import { describe, expect, it } from 'vitest';
import { isCalendarDay, parseFhirDate } from '../../src/fhir/dates.ts';

describe('parseFhirDate: FHIR date, dateTime and instant search values', () => {
  it('reads each precision, with the first day it covers', () => {
    expect(parseFhirDate('2026')).toEqual({ precision: 'year', firstDay: '2026-01-01', text: '2026' });
    expect(parseFhirDate('2026-02')).toEqual({ precision: 'month', firstDay: '2026-02-01', text: '2026-02' });
    expect(parseFhirDate('2024-02-29')).toMatchObject({ precision: 'day', firstDay: '2024-02-29' });
    for (const t of [
      '2026-02-28T23:59:59Z',
      '2026-02-28T10:00+01:00',
      '2026-02-28T10:00:00.123456789-05:30',
      '2026-12-31T00:00:00+14:00',
      '2026-01-01T00:00:00-14:00',
      '0001-01-01T00:00:00Z',
      '9999-12-31T23:59:59.999Z',
    ])
      expect(parseFhirDate(t), t).toMatchObject({ precision: 'time', text: t });
  });

  it('refuses days, times and zones that do not exist', () => {
    for (const t of [
      '2026-02-29', // 2026 is not a leap year
      '2026-02-30',
      '2026-02-31',
      '2100-02-29', // a century that is not a leap year
      '2026-04-31',
      '2026-13-01',
      '2026-00-10',
      '2026-01-00',
      '2026-13',
      '2026-00',
      '0000-01-01',
      '0000',
      '2026-02-30T10:00Z',
      '2026-02-28T24:00Z',
      '2026-02-28T23:60Z',
      '2026-02-28T23:59:60Z',
      '2026-02-28T10:00+15:00',
      '2026-02-28T10:00+14:30',
      '2026-02-28T10:00-01:60',
    ])
      expect(parseFhirDate(t), t).toBeUndefined();
  });

  it('refuses other forms', () => {
    for (const t of [
      '',
      'yesterday',
      '26-02-28',
      '2026-2-28',
      '2026-02-28T10Z',
      '2026-02-28T10:00', // a time needs its zone
      '2026-02-28 10:00Z',
      '2026-02-28T10:00:00.Z',
      '2026-02-28T10:00:00.1234567890Z',
      '+02026-02-28',
      '-271821-04-20',
      '2026-02-28T10:00:00Z ',
      '２０２６',
    ])
      expect(parseFhirDate(t), t).toBeUndefined();
  });
});

describe('isCalendarDay', () => {
  it('knows the Gregorian leap years', () => {
    expect(isCalendarDay(2024, 2, 29)).toBe(true);
    expect(isCalendarDay(2000, 2, 29)).toBe(true);
    expect(isCalendarDay(1900, 2, 29)).toBe(false);
    expect(isCalendarDay(2026, 2, 29)).toBe(false);
    expect(isCalendarDay(2026, 12, 31)).toBe(true);
    expect(isCalendarDay(2026, 11, 31)).toBe(false);
  });
});
