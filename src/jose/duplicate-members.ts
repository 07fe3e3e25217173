import { BACKSLASH, CLOSE_BRACE, CLOSE_BRACKET, COMMA, OPEN_BRACE, OPEN_BRACKET, QUOTE } from '../json-chars.ts';
/**
 * The first member name that occurs twice in one JSON object of `json`, at
 * any depth, or undefined. JSON.parse keeps the last of duplicate members
 * while other parsers keep the first, so a signed header or claim set with a
 * duplicate can mean different things to the signer, to us and to the EHR:
 * the protocol's strict readers refuse it. Names are compared after
 * unescaping ("\u0061lg" is "alg"). One pass that only tracks strings and
 * nesting: it does not validate, so its answer means something only for text
 * that parsed as JSON; on any other text it still returns without throwing.
 */
export function duplicateMember(json: string): string | undefined {
  // One entry per open object or array: the member names seen so far, or null for an array.
  const open: Array<Set<string> | null> = [];
  let expectName = false;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(json, i);
      const names = open.at(-1);
      if (expectName && names) {
        const raw = json.slice(i + 1, end - 1);
        const name = raw.includes('\\') ? unescaped(json.slice(i, end)) : raw;
        if (names.has(name)) return name;
        names.add(name);
      }
      expectName = false;
      i = end - 1;
    } else if (c === OPEN_BRACE) {
      open.push(new Set());
      expectName = true;
    } else if (c === OPEN_BRACKET) {
      open.push(null);
      expectName = false;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      open.pop();
      expectName = false;
    } else if (c === COMMA) {
      expectName = open.at(-1) instanceof Set;
    }
  }
  return undefined;
}

/** Index just past the string whose opening quote is at i (the end of the text if it never closes). */
function stringEnd(s: string, i: number): number {
  for (let j = i + 1; j < s.length; j++) {
    const c = s.charCodeAt(j);
    if (c === BACKSLASH) j++;
    else if (c === QUOTE) return j + 1;
  }
  return s.length;
}

/** The name a quoted JSON string with escapes stands for; a malformed one stands for itself. */
function unescaped(quoted: string): string {
  try {
    return JSON.parse(quoted) as string;
  } catch {
    return quoted;
  }
}

/** The part of a compact JWS (header or claims) that names a member twice, if one does: jose would read it last-wins. */
export function repeatedJwtPart(jwt: string): 'header' | 'claims' | undefined {
  const [header = '', claims = ''] = jwt.split('.').map((b64) => Buffer.from(b64, 'base64url').toString('utf8'));
  if (duplicateMember(header) !== undefined) return 'header';
  if (duplicateMember(claims) !== undefined) return 'claims';
  return undefined;
}
