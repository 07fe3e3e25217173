import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createCipheriv,
  createHash,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { CompactEncrypt, importJWK } from 'jose';
import { Hsm, type PublicJwk } from '../../hsm/hsm.ts';
import { pkcs11js } from '../../hsm/module.ts';
import { concatKdfOtherInfo } from '../../src/jose/jwe-header.ts';
import { deriveCek, openCompactJwe, type DecryptionKey, type OpenOptions } from '../../src/jose/open.ts';
import { createTestToken } from '../helpers/hsm.ts';
import { countSecretKeyObjects } from '../helpers/hsm-import.ts';

/** Software reference: ECDH with node:crypto, then the RFC 7518 §4.6.2 Concat KDF with SHA-256 (one round for 256 bits). */
function softwareCek(ephemeral: KeyObject, recipient: PublicJwk, apu: Buffer, apv: Buffer): Buffer {
  const z = diffieHellman({
    privateKey: ephemeral,
    publicKey: createPublicKey({ key: recipient as never, format: 'jwk' }),
  });
  return createHash('sha256')
    .update(Buffer.from([0, 0, 0, 1]))
    .update(z)
    .update(concatKdfOtherInfo('A256GCM', apu, apv, 256))
    .digest();
}

/** A compact ECDH-ES + A256GCM JWE built entirely in software, independent of the code under test. */
function sealInSoftware(
  recipient: PublicJwk & { kid: string },
  plaintext: Buffer,
  party?: { apu: Buffer; apv: Buffer },
) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const epk = publicKey.export({ format: 'jwk' });
  const header = {
    alg: 'ECDH-ES',
    enc: 'A256GCM',
    kid: recipient.kid,
    epk: { kty: 'EC', crv: 'P-256', x: epk.x, y: epk.y },
    ...(party ? { apu: party.apu.toString('base64url'), apv: party.apv.toString('base64url') } : {}),
  };
  const cek = softwareCek(privateKey, recipient, party?.apu ?? Buffer.alloc(0), party?.apv ?? Buffer.alloc(0));
  const protectedB64 = Buffer.from(JSON.stringify(header)).toString('base64url');
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', cek, iv).setAAD(Buffer.from(protectedB64, 'ascii'));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const jwe = [
    protectedB64,
    '',
    iv.toString('base64url'),
    ct.toString('base64url'),
    cipher.getAuthTag().toString('base64url'),
  ].join('.');
  return {
    jwe,
    cek,
    epkPoint: Buffer.concat([Buffer.from([4]), Buffer.from(epk.x!, 'base64url'), Buffer.from(epk.y!, 'base64url')]),
  };
}

describe('HSM key agreement behind src/jose/open.ts', () => {
  let hsm: Hsm;
  let key: DecryptionKey;
  let publicJwk: PublicJwk & { kid: string };
  let options: OpenOptions;
  beforeAll(async () => {
    const token = createTestToken();
    hsm = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 3 });
    const info = await hsm.generateKeyPair({ kty: 'EC', crv: 'P-256' }, 'derive', 'inbox-kdf-test');
    publicJwk = { ...info.publicJwk, kid: 'enc-1' };
    key = { hsmId: info.id, crv: 'P-256', kid: 'enc-1' };
    options = { hsm, kdf: 'in-token', resolveKey: async (kid) => (kid === 'enc-1' ? key : undefined) };
  });
  afterAll(() => hsm?.close());

  it('derives the same CEK in the HSM (in-token and extract modes) as software ECDH + Concat KDF, with and without apu/apv', async () => {
    for (const party of [undefined, { apu: Buffer.from('Alice'), apv: Buffer.from('Bob') }]) {
      const sealed = sealInSoftware(publicJwk, Buffer.from('{"hello":"inbox"}'), party);
      for (const kdf of ['in-token', 'extract'] as const) {
        const cek = await deriveCek(
          hsm,
          key,
          sealed.epkPoint,
          'A256GCM',
          party?.apu ?? Buffer.alloc(0),
          party?.apv ?? Buffer.alloc(0),
          32,
          kdf,
        );
        expect(cek.equals(sealed.cek)).toBe(true);
        const opened = await openCompactJwe(sealed.jwe, { ...options, kdf });
        expect(opened.plaintext.toString()).toBe('{"hello":"inbox"}');
      }
    }
  });

  it('opens what the jose library seals to the HSM key', async () => {
    const jwe = await new CompactEncrypt(Buffer.from('sealed by jose'))
      .setProtectedHeader({ alg: 'ECDH-ES', enc: 'A256GCM', kid: 'enc-1', cty: 'JWT' })
      .encrypt(await importJWK({ ...publicJwk }, 'ECDH-ES'));
    expect((await openCompactJwe(jwe, options)).plaintext.toString()).toBe('sealed by jose');
  });

  it('a CEK derived from another private key does not open the envelope (tag refused)', async () => {
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const sealed = sealInSoftware(
      { ...(other.publicKey.export({ format: 'jwk' }) as PublicJwk), kid: 'enc-1' },
      Buffer.from('not for us'),
    );
    await expect(openCompactJwe(sealed.jwe, options)).rejects.toMatchObject({ code: 'JWE_DECRYPT_FAILED' });
  });

  it('leaves no derived object on the token after 1,000 opens', async () => {
    // Positive control: a secret-key session object IS seen by the count, whatever pool session runs it.
    const control = await hsm.withSession((session, p11) =>
      p11.C_CreateObject(session, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
        { type: pkcs11js.CKA_TOKEN, value: false },
        { type: pkcs11js.CKA_VALUE, value: randomBytes(32) },
      ]),
    );
    for (let i = 0; i < 6; i++) expect(await countSecretKeyObjects(hsm)).toBe(1);
    await hsm.withSession((session, p11) => p11.C_DestroyObject(session, control));
    expect(await countSecretKeyObjects(hsm)).toBe(0);

    const envelopes = Array.from({ length: 20 }, (_, i) => sealInSoftware(publicJwk, Buffer.from(`message ${i}`)).jwe);
    let opened = 0;
    // 1,000 opens, 4 at a time across the session pool; 100 of them with the extract fallback.
    for (let batch = 0; batch < 250; batch++) {
      await Promise.all(
        Array.from({ length: 4 }, async (_, j) => {
          const kdf = batch % 10 === 0 ? 'extract' : 'in-token';
          const r = await openCompactJwe(envelopes[(batch * 4 + j) % envelopes.length]!, { ...options, kdf });
          if (r.plaintext.length > 0) opened++;
        }),
      );
    }
    expect(opened).toBe(1000);
    for (let i = 0; i < 6; i++) expect(await countSecretKeyObjects(hsm)).toBe(0);
  });
});
