import { createHash, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  checkpointBody,
  derFromRaw,
  formatSignedNote,
  noteKeyId,
  parseCheckpoint,
  parseSignedNote,
  rawFromDer,
  spkiOfJwk,
  utf8,
} from '../../src/audit/verifier/note.ts';
import { sha256 } from '../../src/audit/verifier/sha256.ts';

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = publicKey.export({ format: 'jwk' }) as { kty: string; crv: string; x: string; y: string };

describe('checkpoint signed notes (C2SP signed-note, ECDSA type 0x02)', () => {
  it('builds the P-256 SPKI exactly as OpenSSL does, and the key id from it', () => {
    const der = publicKey.export({ format: 'der', type: 'spki' });
    expect(Buffer.from(spkiOfJwk(jwk))).toEqual(der);
    expect(noteKeyId(jwk, sha256)).toBe(createHash('sha256').update(der).digest().readUInt32BE(0));
  });

  it('converts between raw r||s and DER both ways, for signatures OpenSSL accepts', () => {
    for (let i = 0; i < 200; i++) {
      const data = Buffer.from(`note ${i}`);
      const raw = sign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
      const der = derFromRaw(raw);
      expect(verify('sha256', data, { key: publicKey, dsaEncoding: 'der' }, der)).toBe(true);
      expect(Buffer.from(rawFromDer(der))).toEqual(raw);
    }
    expect(() => rawFromDer(new Uint8Array([0x30, 3, 2, 1, 1]))).toThrow();
  });

  it('formats and parses a checkpoint note; the signature covers the body only', () => {
    const root = createHash('sha256').update('root').digest();
    const body = checkpointBody('gw.example.org/audit', 42, root);
    expect(body).toBe(`gw.example.org/audit\n42\n${root.toString('base64')}\n`);
    const signature = derFromRaw(sign('sha256', utf8(body), { key: privateKey, dsaEncoding: 'ieee-p1363' }));
    const note = formatSignedNote(body, [{ name: 'gw.example.org/audit', keyId: noteKeyId(jwk, sha256), signature }]);
    expect(note).toMatch(
      /^gw\.example\.org\/audit\n42\n[A-Za-z0-9+/=]{44}\n\n\u2014 gw\.example\.org\/audit [A-Za-z0-9+/=]+\n$/,
    );
    const parsed = parseSignedNote(note);
    expect(parsed.body).toBe(body);
    expect(
      verify(
        'sha256',
        utf8(parsed.body),
        { key: createPublicKey({ key: jwk, format: 'jwk' }), dsaEncoding: 'der' },
        parsed.signatures[0]!.signature,
      ),
    ).toBe(true);
    expect(parseCheckpoint(parsed.body)).toMatchObject({ origin: 'gw.example.org/audit', size: 42, extensions: [] });
  });

  it('refuses malformed notes and checkpoints', () => {
    const root = Buffer.alloc(32).toString('base64');
    for (const bad of [
      'no signature\n',
      'a\n1\nroot\n\n— k AAAA\n',
      `a\n1\n${root}\n\n- k AAAAAQ==\n`,
      `a\n1\n${root}\n\n— k AAAAAQ==`,
      `a\u0007\n1\n${root}\n\n— k AAAAAQ==\n`,
    ]) {
      expect(() => parseSignedNote(bad), JSON.stringify(bad)).toThrow();
    }
    for (const bad of [
      'a\n01\n' + root + '\n',
      'a\n1\nAAAA\n',
      '\n1\n' + root + '\n',
      'a\n-1\n' + root + '\n',
      'a\n1\n' + root,
    ]) {
      expect(() => parseCheckpoint(bad), JSON.stringify(bad)).toThrow();
    }
  });
});
