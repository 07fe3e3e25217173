/** How much of a FHIR date a search value gives: a year, a month, a day, or a time with its zone. */
export type DatePrecision = 'year' | 'month' | 'day' | 'time';

export interface FhirDate {
  precision: DatePrecision;
  /** The first day it covers as YYYY-MM-DD (2026-02 starts on 2026-02-01), for the precisions without a time. */
  firstDay: string;
  /** The value as given (a dateTime with a zone when precision is 'time'). */
  text: string;
}

/**
 * FHIR date, dateTime and instant, as search values take them: YYYY,
 * YYYY-MM, YYYY-MM-DD, or a day with a time hh:mm[:ss[.fraction]] and a zone
 * (Z or ±hh:mm); seconds may be left out, as FHIR search allows.
 */
const FORMAT =
  /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:Z|([+-])(\d{2}):(\d{2})))?)?)?$/;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

const isLeapYear = (y: number) => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;

/** A day that exists in the Gregorian calendar (FHIR years start at 0001). */
export function isCalendarDay(year: number, month: number, day: number): boolean {
  if (year < 1 || month < 1 || month > 12 || day < 1) return false;
  const last = month === 2 && isLeapYear(year) ? 29 : (DAYS_IN_MONTH[month - 1] as number);
  return day <= last;
}

/**
 * The FHIR date a text names, or undefined if it names none: the form, and
 * then every field in its range (no 2026-02-30, no month 13, no hour 24, no
 * minute 60, no zone beyond ±14:00), so nothing out of range reaches PostgreSQL.
 */
export function parseFhirDate(text: string): FhirDate | undefined {
  const m = FORMAT.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, sign, zh, zm] = m;
  const year = Number(y);
  if (year < 1 || (mo !== undefined && !isCalendarDay(year, Number(mo), d === undefined ? 1 : Number(d))))
    return undefined;
  if (h !== undefined && (Number(h) > 23 || Number(mi) > 59 || (s !== undefined && Number(s) > 59))) return undefined;
  if (sign !== undefined && (Number(zm) > 59 || Number(zh) > 14 || (Number(zh) === 14 && Number(zm) !== 0)))
    return undefined;
  const precision: DatePrecision =
    h !== undefined ? 'time' : d !== undefined ? 'day' : mo !== undefined ? 'month' : 'year';
  return { precision, firstDay: `${y}-${mo ?? '01'}-${d ?? '01'}`, text };
}
