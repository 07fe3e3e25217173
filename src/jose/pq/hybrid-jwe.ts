import {
  createPublicKey,
  decapsulate,
  diffieHellman,
  encapsulate,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';
import { GatewayError } from '../../errors.ts';
import { b64u, fromB64u, isCanonicalB64u } from '../base64url.ts';
import { checkHeader, parseCompactJwe, type CompactJwe } from '../jwe-header.ts';
import { contentKey, decryptCompact, type DecryptionKey, type OpenedJwe, type OpenOptions } from '../open.ts';
import { concatKdf, encryptCompact, recipientCurve, recipientPublicKey, type RecipientKey } from '../seal.ts';

/**
 * Protocol v2 envelope: a compact JWE whose content key comes from two key
 * agreements at once, ECDH-ES on the recipient's EC key (Z) and ML-KEM-768
 * encapsulation to its ML-KEM key (T), combined as Z' = Z || T in the same
 * Concat KDF as v1 (NIST SP 800-56C Rev. 2 §2). An attacker needs both Z and
 * T, so the envelope is at least as strong as v1 and survives a quantum
 * break of P-256. The alg name is private until the IETF registers one.
 */
export const HYBRID_ALG = 'x-ECDH-ES+ML-KEM-768';

/** The ML-KEM-768 ciphertext (FIPS 203: 1088 bytes) in the protected header, so the AEAD authenticates it. */
export const KEM_CIPHERTEXT_MEMBER = 'ek';
/** The kid of the recipient's ML-KEM key, beside `kid` (its EC key). */
export const KEM_KID_MEMBER = 'kem_kid';

const KEM_CIPHERTEXT_BYTES = 1088;
const KEM_ALG = 'ML-KEM-768';
const PROFILE = { alg: HYBRID_ALG, extraMembers: new Set([KEM_CIPHERTEXT_MEMBER, KEM_KID_MEMBER]) };

/** A recipient's published ML-KEM-768 key: an `AKP` JWK. */
export interface RecipientKemKey {
  kty: string;
  alg?: string;
  pub?: string;
  kid: string;
}

export function recipientKemPublicKey(jwk: RecipientKemKey): KeyObject {
  if (jwk.kty !== 'AKP' || jwk.alg !== KEM_ALG || typeof jwk.pub !== 'string')
    throw new GatewayError('UNPROCESSABLE', `cannot seal to key ${jwk.kid}: not an AKP ${KEM_ALG} key`);
  try {
    // node:crypto runs the FIPS 203 encapsulation-key check on import.
    return createPublicKey({ key: { kty: 'AKP', alg: KEM_ALG, pub: jwk.pub } as never, format: 'jwk' });
  } catch (err) {
    throw new GatewayError('UNPROCESSABLE', `cannot seal to key ${jwk.kid}: not a valid ${KEM_ALG} public key`, {
      cause: err,
    });
  }
}

/**
 * The sender's half of the hybrid agreement: a fresh ephemeral EC key (Z)
 * and an ML-KEM encapsulation (T), the protected header they need (without
 * cty) and the CEK from Z || T. Shared by the whole-message and the
 * streaming writer.
 */
export function hybridAgreement(
  recipient: RecipientKey,
  kem: RecipientKemKey,
): { header: Record<string, unknown>; cek: Buffer } {
  const pub = recipientPublicKey(recipient);
  const kemPub = recipientKemPublicKey(kem);
  const ephemeral = generateKeyPairSync('ec', { namedCurve: recipientCurve(recipient) });
  const z = diffieHellman({ privateKey: ephemeral.privateKey, publicKey: pub });
  const { sharedKey: t, ciphertext } = encapsulate(kemPub);
  const epk = ephemeral.publicKey.export({ format: 'jwk' });
  const header = {
    alg: HYBRID_ALG,
    enc: 'A256GCM',
    kid: recipient.kid,
    epk: { kty: 'EC', crv: recipient.crv, x: epk.x, y: epk.y },
    [KEM_CIPHERTEXT_MEMBER]: b64u(ciphertext),
    [KEM_KID_MEMBER]: kem.kid,
  };
  const secret = Buffer.concat([z, t]);
  const cek = concatKdf(secret);
  for (const b of [z, t, secret]) b.fill(0);
  return { header, cek };
}

/** Seal to both of the recipient's encryption keys (header: alg, enc, kid, epk, ek, kem_kid, cty). */
export function sealHybridCompact(
  plaintext: string | Uint8Array,
  recipient: RecipientKey,
  kem: RecipientKemKey,
  cty = 'JWT',
): string {
  const { header, cek } = hybridAgreement(recipient, kem);
  return encryptCompact({ ...header, cty }, cek, plaintext);
}

/** Finds our ML-KEM private key (in memory, unwrapped from the HSM) by kid. Undefined = unknown: refused. */
export type KemKeyResolver = (kid: string | undefined) => Promise<KeyObject | undefined>;

export interface HybridOpenOptions extends OpenOptions {
  resolveKemKey: KemKeyResolver;
}

/** Whether an envelope asks for the hybrid agreement (read from the header before anything is trusted). */
export function isHybridEnvelope(header: Record<string, unknown>): boolean {
  return header.alg === HYBRID_ALG;
}

/**
 * The content key of a v2 header (checked here against the hybrid profile):
 * ML-KEM decapsulation in memory gives T; ECDH and the Concat KDF over
 * Z || T run in the HSM, so Z never leaves the token. Shared by the
 * whole-message and the streaming reader.
 */
export async function hybridContentKey(
  jwe: CompactJwe,
  options: Pick<HybridOpenOptions, 'hsm' | 'kdf' | 'resolveKey' | 'resolveKemKey'>,
): Promise<{ key: DecryptionKey; cek: Buffer }> {
  const accepted = checkHeader(jwe, PROFILE);
  const h = jwe.header;
  const ek = h[KEM_CIPHERTEXT_MEMBER];
  if (typeof ek !== 'string' || !isCanonicalB64u(ek) || fromB64u(ek).length !== KEM_CIPHERTEXT_BYTES)
    throw new GatewayError('JWE_MALFORMED', `${KEM_CIPHERTEXT_MEMBER} must be a ${KEM_ALG} ciphertext`, {
      expression: `header.${KEM_CIPHERTEXT_MEMBER}`,
    });
  const kemKid = h[KEM_KID_MEMBER];
  const kemKey = typeof kemKid === 'string' ? await options.resolveKemKey(kemKid) : undefined;
  if (!kemKey)
    throw new GatewayError(
      'JWE_UNKNOWN_KID',
      `${KEM_KID_MEMBER} ${JSON.stringify(kemKid ?? null)} is not one of this gateway's ML-KEM keys`,
      { expression: `header.${KEM_KID_MEMBER}` },
    );
  // A tampered ciphertext decapsulates to an unrelated T (FIPS 203 implicit rejection): the tag then fails.
  const t = decapsulate(kemKey, fromB64u(ek));
  try {
    return await contentKey(accepted, options, t);
  } finally {
    t.fill(0);
  }
}

/** Open a v2 envelope (hybridContentKey), releasing the plaintext only if the tag verifies. */
export async function openHybridCompactJwe(text: string, options: HybridOpenOptions): Promise<OpenedJwe> {
  const jwe = parseCompactJwe(text);
  const { key, cek } = await hybridContentKey(jwe, options);
  return decryptCompact(jwe, key, cek);
}
