import {
  createCipheriv,
  createDecipheriv,
  createHash,
  diffieHellman,
  generateKeyPairSync,
  randomBytes,
} from 'node:crypto';
import {
  createPublicKey,
  sign as cryptoSign,
  verify as cryptoVerify,
  type JsonWebKeyInput,
  type KeyObject,
} from 'node:crypto';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';

/**
 * An independent protocol v2 peer, written from docs/PROTOCOL.md §13 alone:
 * ML-KEM-768 and ML-DSA-65 from @noble/post-quantum, ECDH and AES-GCM from
 * node:crypto, and none of the gateway's JOSE code.
 */
const b64u = (b: Uint8Array | string) => Buffer.from(b).toString('base64url');
const unb64u = (s: string) => Buffer.from(s, 'base64url');

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

/** PROTOCOL.md §13.2: CEK = SHA-256(0x00000001 || Z || T || OtherInfo), OtherInfo as in v1 (AlgorithmID "A256GCM"). */
export function hybridCek(z: Uint8Array, t: Uint8Array): Buffer {
  const alg = Buffer.from('A256GCM');
  const otherInfo = Buffer.concat([u32(alg.length), alg, u32(0), u32(0), u32(256)]);
  return createHash('sha256').update(u32(1)).update(z).update(t).update(otherInfo).digest();
}

export interface PeerJwks {
  ecEnc: { kty: 'EC'; crv: 'P-256'; x: string; y: string; kid: string; use: 'enc' };
  kemEnc: { kty: 'AKP'; alg: 'ML-KEM-768'; pub: string; kid: string; use: 'enc' };
  ecSig: { kty: 'EC'; crv: 'P-256'; x: string; y: string; kid: string; use: 'sig' };
  pqSig: { kty: 'AKP'; alg: 'ML-DSA-65'; pub: string; kid: string; use: 'sig' };
}

export function createPqPeer() {
  const ecEnc = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ecSig = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kem = ml_kem768.keygen(randomBytes(64));
  const dsa = ml_dsa65.keygen(randomBytes(32));
  const ecEncJwk = ecEnc.publicKey.export({ format: 'jwk' });
  const ecSigJwk = ecSig.publicKey.export({ format: 'jwk' });
  const jwks: PeerJwks = {
    ecEnc: { kty: 'EC', crv: 'P-256', x: ecEncJwk.x!, y: ecEncJwk.y!, kid: 'peer-enc', use: 'enc' },
    kemEnc: { kty: 'AKP', alg: 'ML-KEM-768', pub: b64u(kem.publicKey), kid: 'peer-kem', use: 'enc' },
    ecSig: { kty: 'EC', crv: 'P-256', x: ecSigJwk.x!, y: ecSigJwk.y!, kid: 'peer-sig', use: 'sig' },
    pqSig: { kty: 'AKP', alg: 'ML-DSA-65', pub: b64u(dsa.publicKey), kid: 'peer-pq-sig', use: 'sig' },
  };

  /**
   * Seal to a gateway's EC and ML-KEM encryption keys. `omitT` leaves the ML-KEM secret out of the KDF (a broken
   * sender); `cty` is the content's media type (§10.2: application/dicom for imaging content), JWT by default.
   */
  function seal(
    plaintext: string,
    to: { ec: { crv: string; x: string; y: string; kid: string }; kem: { pub: string; kid: string } },
    options: { omitT?: boolean; cty?: string } = {},
  ): string {
    const eph = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const z = diffieHellman({
      privateKey: eph.privateKey,
      publicKey: createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: to.ec.x, y: to.ec.y }, format: 'jwk' }),
    });
    const { cipherText, sharedSecret } = ml_kem768.encapsulate(unb64u(to.kem.pub));
    const epk = eph.publicKey.export({ format: 'jwk' });
    const header = {
      alg: 'x-ECDH-ES+ML-KEM-768',
      enc: 'A256GCM',
      kid: to.ec.kid,
      epk: { kty: 'EC', crv: 'P-256', x: epk.x, y: epk.y },
      ek: b64u(cipherText),
      kem_kid: to.kem.kid,
      cty: options.cty ?? 'JWT',
    };
    // Without T the CEK is v1's: what an attacker who broke only P-256 could compute.
    const cek = hybridCek(z, options.omitT ? Buffer.alloc(0) : sharedSecret);
    const protectedB64 = b64u(JSON.stringify(header));
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', cek, iv).setAAD(Buffer.from(protectedB64, 'ascii'));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return [protectedB64, '', b64u(iv), b64u(ct), b64u(cipher.getAuthTag())].join('.');
  }

  /** Open an envelope sealed to this peer's two encryption keys. */
  function open(jwe: string): { header: Record<string, unknown>; plaintext: string } {
    const [p, ek, iv, ct, tag] = jwe.split('.') as [string, string, string, string, string];
    const header = JSON.parse(unb64u(p).toString('utf8')) as Record<string, unknown> & {
      epk: JsonWebKeyInput['key'];
      ek: string;
    };
    if (header.alg !== 'x-ECDH-ES+ML-KEM-768' || header.enc !== 'A256GCM' || ek !== '') throw new Error('not v2');
    if (header.kid !== jwks.ecEnc.kid || header.kem_kid !== jwks.kemEnc.kid) throw new Error('not for this peer');
    const z = diffieHellman({
      privateKey: ecEnc.privateKey,
      publicKey: createPublicKey({ key: header.epk, format: 'jwk' }),
    });
    const t = ml_kem768.decapsulate(unb64u(header.ek), kem.secretKey);
    const decipher = createDecipheriv('aes-256-gcm', hybridCek(z, t), unb64u(iv)).setAAD(Buffer.from(p, 'ascii'));
    decipher.setAuthTag(unb64u(tag));
    const plaintext = Buffer.concat([decipher.update(unb64u(ct)), decipher.final()]).toString('utf8');
    return { header, plaintext };
  }

  /** PROTOCOL.md §13.3: general JSON serialization, ES256 then ML-DSA-65, the same payload and typ. */
  function signDual(payload: string, typ: string): string {
    const payloadB64 = b64u(payload);
    const es = b64u(JSON.stringify({ alg: 'ES256', kid: jwks.ecSig.kid, typ }));
    const pq = b64u(JSON.stringify({ alg: 'ML-DSA-65', kid: jwks.pqSig.kid, typ }));
    const esSig = createSign(ecSig.privateKey, Buffer.from(`${es}.${payloadB64}`));
    const pqSig = ml_dsa65.sign(Buffer.from(`${pq}.${payloadB64}`), dsa.secretKey);
    return JSON.stringify({
      payload: payloadB64,
      signatures: [
        { protected: es, signature: b64u(esSig) },
        { protected: pq, signature: b64u(pqSig) },
      ],
    });
  }

  /** PROTOCOL.md §3 / §6: a compact ES256 JWS by the same EC signing key (what a v1 peer, or a downgrade, sends). */
  function signCompact(payload: string, typ: string): string {
    const input = `${b64u(JSON.stringify({ alg: 'ES256', kid: jwks.ecSig.kid, typ }))}.${b64u(payload)}`;
    return `${input}.${b64u(createSign(ecSig.privateKey, Buffer.from(input)))}`;
  }

  return { jwks, seal, open, signDual, signCompact };
}

function createSign(key: KeyObject, data: Buffer): Buffer {
  return cryptoSign('sha256', data, { key, dsaEncoding: 'ieee-p1363' });
}

/** Both signatures of a dual-signed JWS checked with the sender's ES256 and ML-DSA-65 keys; false if either fails. */
export function peerVerifyDual(
  jws: string,
  keys: { ec: { x: string; y: string }; pq: { pub: string } },
): { ok: boolean; payload: string } {
  const doc = JSON.parse(jws) as { payload: string; signatures: { protected: string; signature: string }[] };
  let es = false;
  let pq = false;
  for (const s of doc.signatures) {
    const header = JSON.parse(unb64u(s.protected).toString('utf8')) as { alg: string };
    const input = Buffer.from(`${s.protected}.${doc.payload}`);
    if (header.alg === 'ES256') {
      const key = createPublicKey({ key: { kty: 'EC', crv: 'P-256', ...keys.ec }, format: 'jwk' });
      es = cryptoVerify('sha256', input, { key, dsaEncoding: 'ieee-p1363' }, unb64u(s.signature));
    } else if (header.alg === 'ML-DSA-65') {
      pq = ml_dsa65.verify(unb64u(s.signature), input, unb64u(keys.pq.pub));
    }
  }
  return { ok: es && pq, payload: unb64u(doc.payload).toString('utf8') };
}
