import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createDecipheriv,
  createHash,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';
import { CompactEncrypt, type JWK } from 'jose';
import { createTestToken } from '../helpers/hsm.ts';
import { Hsm, type HsmKeyInfo } from '../../hsm/hsm.ts';
import { pkcs11js } from '../../hsm/module.ts';
import { findKeyObject, findObjects } from '../../hsm/key-store.ts';
import { deriveSharedSecret } from '../../hsm/ecdh.ts';
import { ckrName } from '../../hsm/errors.ts';

const lenPrefixed = (b: Buffer) => {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
};
/** RFC 7518 §4.6.2 OtherInfo for ECDH-ES direct key agreement. */
function otherInfo(enc: string, keyBits: number, apu = Buffer.alloc(0), apv = Buffer.alloc(0)): Buffer {
  const supp = Buffer.alloc(4);
  supp.writeUInt32BE(keyBits);
  return Buffer.concat([lenPrefixed(Buffer.from(enc)), lenPrefixed(apu), lenPrefixed(apv), supp]);
}
/** Software Concat KDF (NIST SP 800-56A, SHA-256), the reference. */
function concatKdf(z: Buffer, info: Buffer, keyBytes: number): Buffer {
  const out: Buffer[] = [];
  for (let i = 1; out.length * 32 < keyBytes; i++) {
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(i);
    out.push(createHash('sha256').update(counter).update(z).update(info).digest());
  }
  return Buffer.concat(out).subarray(0, keyBytes);
}
const pointOf = (jwk: JWK) =>
  Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);

async function countSecretObjects(hsm: Hsm): Promise<number> {
  // Session objects are visible to every session of this process: one search sees them all.
  return hsm.withSession(
    (session, p11) => findObjects(p11, session, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY }]).length,
  );
}

describe('ECDH-ES with an HSM-held key', () => {
  let hsm: Hsm;
  let key: HsmKeyInfo;
  let tokenPublic: KeyObject;
  beforeAll(async () => {
    const token = createTestToken();
    hsm = Hsm.open({ library: token.library, tokenLabel: token.label, pin: token.pin, sessions: 4 });
    key = await hsm.generateKeyPair({ kty: 'EC', crv: 'P-256' }, 'derive', 'ecdh');
    tokenPublic = createPublicKey({ key: key.publicJwk as never, format: 'jwk' });
  });
  afterAll(() => hsm?.close());

  it("'in-token' and 'extract' give the CEK of a software ECDH + Concat KDF for the same ephemeral key", async () => {
    for (const [enc, bits] of [
      ['A256GCM', 256],
      ['A128GCM', 128],
      ['A256CBC-HS512', 512],
    ] as const) {
      const eph = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const info = otherInfo(enc, bits, Buffer.from('sender'), Buffer.from('recipient'));
      const expected = concatKdf(diffieHellman({ privateKey: eph.privateKey, publicKey: tokenPublic }), info, bits / 8);
      const peer = pointOf(eph.publicKey.export({ format: 'jwk' }) as JWK);
      const inToken = await hsm.deriveConcatKdf(key.id, peer, 32, info, bits / 8, 'in-token');
      const extracted = await hsm.deriveConcatKdf(key.id, peer, 32, info, bits / 8, 'extract');
      expect(inToken.toString('hex'), enc).toBe(expected.toString('hex'));
      expect(extracted.toString('hex'), enc).toBe(expected.toString('hex'));
    }
  });

  it('opens a compact JWE that jose encrypted to the token public key (ECDH-ES, A256GCM)', async () => {
    const plaintext = Buffer.from('{"resourceType":"Bundle"}');
    const jwe = await new CompactEncrypt(plaintext)
      .setProtectedHeader({ alg: 'ECDH-ES', enc: 'A256GCM' })
      .encrypt(tokenPublic);
    const [h, , iv, ct, tag] = jwe.split('.');
    const header = JSON.parse(Buffer.from(h!, 'base64url').toString());
    const cek = await hsm.deriveConcatKdf(key.id, pointOf(header.epk), 32, otherInfo('A256GCM', 256), 32, 'in-token');
    const decipher = createDecipheriv('aes-256-gcm', cek, Buffer.from(iv!, 'base64url'));
    decipher.setAAD(Buffer.from(h!, 'ascii'));
    decipher.setAuthTag(Buffer.from(tag!, 'base64url'));
    expect(Buffer.concat([decipher.update(Buffer.from(ct!, 'base64url')), decipher.final()]).equals(plaintext)).toBe(
      true,
    );
  });

  it("Z derived as in 'in-token' mode cannot be read: CKR_ATTRIBUTE_SENSITIVE", async () => {
    const eph = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const peer = pointOf(eph.publicKey.export({ format: 'jwk' }) as JWK);
    const result = await hsm.withSession(async (session, p11) => {
      const privateKey = findKeyObject(p11, session, Buffer.from(key.id, 'hex'), pkcs11js.CKO_PRIVATE_KEY)!;
      const z = await deriveSharedSecret(p11, session, privateKey, peer, 32, false);
      try {
        const [sensitive, extractable] = p11.C_GetAttributeValue(session, z, [
          { type: pkcs11js.CKA_SENSITIVE },
          { type: pkcs11js.CKA_EXTRACTABLE },
        ]);
        let read = 'allowed';
        try {
          p11.C_GetAttributeValue(session, z, [{ type: pkcs11js.CKA_VALUE }]);
        } catch (err) {
          read = ckrName(err) ?? String(err);
        }
        return { sensitive: (sensitive!.value as Buffer)[0], extractable: (extractable!.value as Buffer)[0], read };
      } finally {
        p11.C_DestroyObject(session, z);
      }
    });
    expect(result).toEqual({ sensitive: 1, extractable: 0, read: 'CKR_ATTRIBUTE_SENSITIVE' });
  });

  it('leaves no derived object behind after 1,000 derives (and after failed ones)', async () => {
    expect(await countSecretObjects(hsm)).toBe(0);
    // Control: the count does see a Z left behind in another session.
    const peer0 = pointOf(
      generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }) as JWK,
    );
    const leaked = await hsm.withSession(async (session, p11) =>
      deriveSharedSecret(
        p11,
        session,
        findKeyObject(p11, session, Buffer.from(key.id, 'hex'), pkcs11js.CKO_PRIVATE_KEY)!,
        peer0,
        32,
        false,
      ),
    );
    expect(await countSecretObjects(hsm)).toBe(1);
    await hsm.withSession((session, p11) => p11.C_DestroyObject(session, leaked));
    expect(await countSecretObjects(hsm)).toBe(0);
    const info = otherInfo('A256GCM', 256);
    const peers = Array.from({ length: 20 }, () =>
      pointOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }) as JWK),
    );
    const results = await Promise.all(
      Array.from({ length: 1_000 }, (_, i) =>
        hsm.deriveConcatKdf(key.id, peers[i % peers.length]!, 32, info, 32, i % 10 === 0 ? 'extract' : 'in-token'),
      ),
    );
    expect(results.every((cek) => cek.length === 32)).toBe(true);
    expect(new Set(results.map((c) => c.toString('hex'))).size).toBe(peers.length);
    // A point not on the curve is refused by the token (SoftHSM: CKR_GENERAL_ERROR) as a failed
    // operation, not as an unavailable HSM (no 503, no pool flush), and still leaves nothing.
    const offCurve = Buffer.concat([Buffer.from([4]), Buffer.alloc(64, 7)]);
    for (const mode of ['in-token', 'extract'] as const) {
      await expect(hsm.deriveConcatKdf(key.id, offCurve, 32, info, 32, mode)).rejects.toMatchObject({
        name: 'HsmError',
        code: 'HSM_OPERATION_FAILED',
      });
    }
    expect(await countSecretObjects(hsm)).toBe(0);
  });
});
