import fc from 'fast-check';

/**
 * Hostile inputs shared by the fuzz properties. Near-valid inputs (a valid
 * envelope with one part mutated) reach deeper than random bytes, so most
 * arbitraries here mutate something well-formed.
 */

/** Characters that break naive parsers: NUL, controls, separators, lone surrogates, BOM, bidi. */
const NASTY_CHARS = [
  '\0',
  '\u0001',
  '\u001f',
  '\u007f',
  '\t',
  '\r',
  '\n',
  '\r\n',
  '\u2028',
  '\ufeff',
  '\ud800',
  '\udfff',
  '\u202e',
  '\uffff',
  '"',
  '\\',
  '%',
  '%00',
  '&',
  '=',
  ';',
  ',',
  '|',
  '.',
  '-',
  '_',
  ' ',
];

export const nastyChar = fc.constantFrom(...NASTY_CHARS);

/** Strings mixing ordinary text with the characters above, and long runs. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.array(fc.oneof(nastyChar, fc.string({ maxLength: 4 })), { maxLength: 12 }).map((a) => a.join('')),
  fc.constantFrom('', ' ', 'A'.repeat(5000), '0', '-1', 'null', 'true', '__proto__', 'constructor', 'NaN'),
);

/** Numbers at the edges: -0, the safe-integer limit, the largest double, tiny, negative. */
export const boundaryNumber = fc.constantFrom(
  0,
  -0,
  -1,
  1,
  0.5,
  2 ** 31,
  2 ** 32,
  2 ** 53,
  2 ** 53 + 2,
  -(2 ** 53),
  1e308,
  -1e308,
  5e-324,
  8.64e15,
  8.64e15 + 1,
);

/** A JSON value of the wrong type for almost any member. */
export const hostileJsonValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, [], {}, [[]], { '': null }, { __proto__: null }),
  boundaryNumber,
  hostileString,
  fc.jsonValue({ maxDepth: 3 }),
);

/** Byte sequences UTF-8 decoders must refuse: overlongs, surrogates, stray continuations, truncated sequences. */
export const invalidUtf8 = fc.constantFrom(
  [0xc0, 0x80],
  [0xed, 0xa0, 0x80],
  [0xff],
  [0xfe],
  [0x80],
  [0xe2, 0x82],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf0, 0x9f, 0x98],
);

/** Random bytes, sometimes with an invalid UTF-8 sequence inside. */
export const rawBytes: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  fc
    .tuple(fc.string({ maxLength: 40 }), invalidUtf8, fc.string({ maxLength: 40 }))
    .map(([a, bad, b]) => Buffer.concat([Buffer.from(a), Buffer.from(bad), Buffer.from(b)])),
);

/** Deep or unbalanced nesting: [[[[…, {"a":{"a":…, and the unclosed variants. */
export const deepNesting: fc.Arbitrary<string> = fc
  .tuple(fc.integer({ min: 1, max: 20_000 }), fc.constantFrom('[', '{"a":'), fc.boolean())
  .map(([n, open, closed]) => {
    const close = open === '[' ? ']' : '}';
    return open.repeat(n) + (open === '[' ? '' : '1') + (closed ? close.repeat(n) : '');
  });

type Json = Record<string, unknown> | unknown[];

/** Every path to a member or item of a JSON value (the root excluded). */
function paths(value: unknown, at: Array<string | number> = [], out: Array<Array<string | number>> = []) {
  const children: Array<[string | number, unknown]> = Array.isArray(value)
    ? value.map((v, i) => [i, v])
    : value && typeof value === 'object'
      ? Object.entries(value)
      : [];
  for (const [k, v] of children) {
    out.push([...at, k]);
    paths(v, [...at, k], out);
  }
  return out;
}

type Mutation =
  | { kind: 'set'; pick: number; value: unknown }
  | { kind: 'delete'; pick: number }
  | { kind: 'add'; pick: number; name: string; value: unknown };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), pick: fc.nat(), value: hostileJsonValue }),
  fc.record({ kind: fc.constant('delete' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('add' as const), pick: fc.nat(), name: hostileString, value: hostileJsonValue }),
);

/** Apply one mutation to a deep copy of `doc`: a member set to a hostile value, deleted, or a member added. */
export function applyMutation<T>(doc: T, m: Mutation): T {
  const copy = structuredClone(doc) as Json;
  const all = paths(copy);
  if (all.length === 0) return copy as T;
  const path = all[m.pick % all.length]!;
  const parent = path.slice(0, -1).reduce<unknown>((n, k) => (n as Record<string | number, unknown>)[k], copy) as
    Record<string | number, unknown> | unknown[];
  const key = path.at(-1)!;
  if (m.kind === 'set') (parent as Record<string | number, unknown>)[key] = m.value;
  else if (m.kind === 'delete') {
    if (Array.isArray(parent)) parent.splice(Number(key), 1);
    else delete parent[key];
  } else {
    const target = (parent as Record<string | number, unknown>)[key];
    if (target && typeof target === 'object' && !Array.isArray(target))
      Object.defineProperty(target, m.name, { value: m.value, enumerable: true, writable: true, configurable: true });
    else (parent as Record<string | number, unknown>)[key] = m.value;
  }
  return copy as T;
}

/** One to three mutations of a JSON document. */
export function mutatedJson<T>(doc: T): fc.Arbitrary<T> {
  return fc.array(mutation, { minLength: 1, maxLength: 3 }).map((ms) => ms.reduce((d, m) => applyMutation(d, m), doc));
}

/** Text edits: a character replaced, a slice cut out, bytes inserted, or the text truncated. */
export function mutatedText(text: string): fc.Arbitrary<string> {
  return fc.oneof(
    fc.tuple(fc.nat(), fc.oneof(nastyChar, fc.string({ minLength: 1, maxLength: 3 }))).map(([at, c]) => {
      const i = at % Math.max(1, text.length);
      return text.slice(0, i) + c + text.slice(i + 1);
    }),
    fc.nat().map((at) => text.slice(0, at % (text.length + 1))),
    fc.tuple(fc.nat(), fc.nat({ max: 40 })).map(([at, n]) => {
      const i = at % Math.max(1, text.length);
      return text.slice(0, i) + text.slice(i + n);
    }),
    fc.tuple(fc.nat(), hostileString).map(([at, s]) => {
      const i = at % (text.length + 1);
      return text.slice(0, i) + s + text.slice(i);
    }),
  );
}

/** Byte edits of a buffer: one byte set, a slice cut out, bytes inserted, or truncation. */
export function mutatedBytes(bytes: Buffer, focus = bytes.length): fc.Arbitrary<Buffer> {
  const at = fc.nat({ max: Math.max(0, focus - 1) });
  return fc.oneof(
    fc.tuple(at, fc.integer({ min: 0, max: 255 })).map(([i, b]) => {
      const out = Buffer.from(bytes);
      out[i] = b;
      return out;
    }),
    fc.nat({ max: bytes.length }).map((n) => bytes.subarray(0, n)),
    fc
      .tuple(at, fc.nat({ max: 64 }))
      .map(([i, n]) => Buffer.concat([bytes.subarray(0, i), bytes.subarray(Math.min(bytes.length, i + n))])),
    fc
      .tuple(at, fc.uint8Array({ minLength: 1, maxLength: 16 }))
      .map(([i, ins]) => Buffer.concat([bytes.subarray(0, i), Buffer.from(ins), bytes.subarray(i)])),
  );
}

/** base64url of any bytes or text, the form every JOSE segment takes. */
export const b64u = (data: string | Buffer | Uint8Array) => Buffer.from(data).toString('base64url');
