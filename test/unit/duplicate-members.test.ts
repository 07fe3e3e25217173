import { describe, expect, it } from 'vitest';
import { duplicateMember } from '../../src/jose/duplicate-members.ts';

describe('duplicateMember: the first member name repeated within one JSON object', () => {
  it('finds none in JSON without duplicates, whatever its shape', () => {
    for (const ok of [
      '{}',
      '[]',
      '"alg"',
      '42',
      'null',
      '{"alg":"ES256","kid":"k1","typ":"JWT"}',
      // The same name in sibling and nested objects is not a duplicate.
      '{"a":{"a":1},"b":{"a":2},"c":[{"a":1},{"a":2}]}',
      // A value equal to a name is not a name.
      '{"alg":"kid","kid":"alg"}',
      '{"a":["a","a"],"b":"a"}',
      // Escapes inside strings, including an escaped quote and backslash, do not end the string early.
      '{"a\\"b":1,"a\\\\":2,"a":"x\\"y\\\\","b":"\\u0061"}',
      ' { "x" : [ 1 , { "y" : null } , "z" ] , "y" : true } ',
      '{"":1,"\\u0000":2}',
    ]) {
      expect(duplicateMember(ok), ok).toBeUndefined();
      // The detector runs on text that parsed: keep the cases honest.
      expect(() => JSON.parse(ok)).not.toThrow();
    }
  });

  it('finds a duplicate at the top level, first one named', () => {
    expect(duplicateMember('{"alg":"ES256","alg":"none"}')).toBe('alg');
    expect(duplicateMember('{"a":1,"b":2,"b":3,"a":4}')).toBe('b');
    expect(duplicateMember(' {\n "kid" : "a" ,\n "kid" : "b"\n}')).toBe('kid');
  });

  it('compares names after unescaping', () => {
    expect(duplicateMember('{"alg":"ES256","\\u0061lg":"none"}')).toBe('alg');
    expect(duplicateMember('{"\\u0061\\u006C\\u0067":1,"alg":2}')).toBe('alg');
    expect(duplicateMember('{"a\\/b":1,"a/b":2}')).toBe('a/b');
    expect(duplicateMember('{"\\ud83d\\ude00":1,"😀":2}')).toBe('😀');
    expect(duplicateMember('{"a\\"":1,"a\\u0022":2}')).toBe('a"');
  });

  it('finds a duplicate at any depth: in nested objects and objects inside arrays', () => {
    expect(duplicateMember('{"epk":{"kty":"EC","x":"a","x":"b"}}')).toBe('x');
    expect(duplicateMember('{"content":{"entry":[{"resource":{"id":"1","id":"2"}}]}}')).toBe('id');
    expect(duplicateMember('[{"a":1},{"b":1,"b":2}]')).toBe('b');
    expect(duplicateMember('{"a":[1,[2,{"c":0,"c":1}]]}')).toBe('c');
  });

  it('tracks which object a name belongs to after nested values close', () => {
    // "b" after the nested object belongs to the outer object, like the first "b".
    expect(duplicateMember('{"b":1,"n":{"x":1},"b":2}')).toBe('b');
    expect(duplicateMember('{"n":{"b":1},"b":2}')).toBeUndefined();
    expect(duplicateMember('{"l":[{"b":1}],"b":2}')).toBeUndefined();
    expect(duplicateMember('{"l":["b","c"],"b":2,"c":3}')).toBeUndefined();
  });

  it('agrees with JSON.parse on what the text means when there is no duplicate', () => {
    const text = JSON.stringify({ iss: 'a', jti: 'b', content: { resourceType: 'Bundle', entry: [{ a: 1 }] } });
    expect(duplicateMember(text)).toBeUndefined();
    const withDup = text.replace('"jti":"b"', '"jti":"b","jti":"c"');
    expect(JSON.parse(withDup).jti).toBe('c'); // what last-wins would have read
    expect(duplicateMember(withDup)).toBe('jti');
  });

  it('scans a large document in one pass', () => {
    const big = JSON.stringify({ content: { entry: Array.from({ length: 20_000 }, (_, i) => ({ id: String(i) })) } });
    expect(duplicateMember(big)).toBeUndefined();
    expect(duplicateMember(big.replace(/}}$/, ',"entry":[]}}'))).toBe('entry');
  });
});

describe('duplicateMember on text that is not JSON', () => {
  it('returns without throwing (the caller refuses such text as malformed anyway)', () => {
    for (const junk of ['', '{', '{"a', '{"a":"b', '{"\\u00zz":1,"\\u00zz":2}', ']]}}', 'not json', '{"a":1}}}"']) {
      expect(() => duplicateMember(junk), junk).not.toThrow();
    }
  });
});
