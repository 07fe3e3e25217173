import { describe, expect, it } from 'vitest';
import { rawMember } from '../../src/inbound/json-member.ts';
import { concatKdfOtherInfo } from '../../src/jose/jwe-header.ts';

describe('rawMember: the exact text of a top-level JSON member', () => {
  it('returns the bytes as written, whatever the layout', () => {
    const content = '{ "resourceType" : "Bundle",\n  "entry": [ {"x": "a}\\"]{"} ] }';
    for (const text of [
      `{"iss":"a","content":${content}}`,
      `{\n  "content" : ${content} ,\n  "iss": "a"\n}`,
      `{"a":[1,{"content":2}],"s":"\\"content\\":3","content":${content}}`,
    ]) {
      expect(JSON.parse(text).content).toEqual(JSON.parse(content));
      expect(rawMember(text, 'content')).toBe(content);
    }
  });

  it('handles scalars, absence and duplicates like JSON.parse (last wins)', () => {
    expect(rawMember('{"a":1,"b":-2.5e3,"c":null}', 'b')).toBe('-2.5e3');
    expect(rawMember('{"a":1}', 'content')).toBeUndefined();
    expect(rawMember('[{"content":1}]', 'content')).toBeUndefined();
    expect(rawMember('{"content":{"v":1},"content":{"v":2}}', 'content')).toBe('{"v":2}');
    expect(rawMember('{"\\u0063ontent":7}', 'content')).toBe('7');
  });
});

describe('Concat KDF OtherInfo (RFC 7518 §4.6.2)', () => {
  it('matches the RFC 7518 Appendix C example (ECDH-ES, A128GCM, apu Alice, apv Bob)', () => {
    const info = concatKdfOtherInfo('A128GCM', Buffer.from('Alice'), Buffer.from('Bob'), 128);
    expect([...info]).toEqual([
      0, 0, 0, 7, 65, 49, 50, 56, 71, 67, 77, 0, 0, 0, 5, 65, 108, 105, 99, 101, 0, 0, 0, 3, 66, 111, 98, 0, 0, 0, 128,
    ]);
  });
});
