/**
 * The Prefer request header (RFC 7240) as FHIR uses it: `return` on
 * create-like interactions and `handling` on searches. A preference the
 * gateway does not know, or a value it does not support, is ignored, as the
 * RFC asks; the answer's Preference-Applied header says what was honoured.
 */
export type ReturnPreference = 'minimal' | 'representation' | 'OperationOutcome';
export type HandlingPreference = 'strict' | 'lenient';

export interface Preferences {
  return?: ReturnPreference;
  handling?: HandlingPreference;
}

const RETURN = new Set<string>(['minimal', 'representation', 'OperationOutcome']);
const HANDLING = new Set<string>(['strict', 'lenient']);

/** One header value, or the values of a repeated header: the first occurrence of a preference wins. */
export function parsePrefer(header: string | string[] | undefined): Preferences {
  const out: Preferences = {};
  const values = header === undefined ? [] : Array.isArray(header) ? header : [header];
  for (const pref of values.flatMap((v) => v.split(','))) {
    // A preference's own parameters (after ';') are not used by either preference.
    const [token = '', rawValue] = (pref.split(';')[0] ?? '').split('=', 2).map((s) => s.trim());
    const value = rawValue?.replace(/^"(.*)"$/, '$1');
    const name = token.toLowerCase();
    if (name === 'return' && out.return === undefined && value !== undefined && RETURN.has(value))
      out.return = value as ReturnPreference;
    if (name === 'handling' && out.handling === undefined && value !== undefined && HANDLING.has(value))
      out.handling = value as HandlingPreference;
  }
  return out;
}
