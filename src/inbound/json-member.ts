/**
 * The raw text of one member of a top-level JSON object, exactly as written.
 * The signed claims carry the Bundle as the "content" member; handing the
 * local EHR that text (not a re-serialisation) gives it the bytes the sender
 * accepted. The text must already have parsed as JSON (this scanner trusts
 * its structure and only tracks strings and nesting).
 */
export function rawMember(json: string, name: string): string | undefined {
  let i = skipWs(json, 0);
  if (json[i] !== '{') return undefined;
  i++;
  // The last occurrence wins, as in JSON.parse, so the raw text and the parsed value agree.
  let found: string | undefined;
  for (;;) {
    i = skipWs(json, i);
    if (json[i] === '}') return found;
    const keyEnd = stringEnd(json, i);
    const key = JSON.parse(json.slice(i, keyEnd)) as string;
    i = skipWs(json, keyEnd);
    i = skipWs(json, i + 1); // the colon
    const valueEnd = valueEndAt(json, i);
    if (key === name) found = json.slice(i, valueEnd);
    i = skipWs(json, valueEnd);
    if (json[i] === ',') i++;
    else return found;
  }
}

function skipWs(s: string, i: number): number {
  while (i < s.length && (s[i] === ' ' || s[i] === '\n' || s[i] === '\r' || s[i] === '\t')) i++;
  return i;
}

/** Index just past the string starting at i (s[i] is the opening quote). */
function stringEnd(s: string, i: number): number {
  for (let j = i + 1; j < s.length; j++) {
    if (s[j] === '\\') j++;
    else if (s[j] === '"') return j + 1;
  }
  throw new SyntaxError('unterminated string');
}

/** Index just past the JSON value starting at i. */
function valueEndAt(s: string, i: number): number {
  const c = s[i];
  if (c === '"') return stringEnd(s, i);
  if (c === '{' || c === '[') {
    let depth = 0;
    for (let j = i; j < s.length; j++) {
      const d = s[j];
      if (d === '"') j = stringEnd(s, j) - 1;
      else if (d === '{' || d === '[') depth++;
      else if (d === '}' || d === ']') {
        if (--depth === 0) return j + 1;
      }
    }
    throw new SyntaxError('unterminated value');
  }
  let j = i;
  while (j < s.length && !',}] \n\r\t'.includes(s.charAt(j))) j++;
  return j;
}
