import { createDecipheriv } from 'node:crypto';
import type { Hsm, KdfMode } from '../../hsm/hsm.ts';
import { GatewayError } from '../errors.ts';
import {
  ALLOWED,
  checkHeader,
  concatKdfOtherInfo,
  COORD_BYTES,
  parseCompactJwe,
  type AcceptedHeader,
  type CompactJwe,
} from './jwe-header.ts';
import type { EcCurve } from './ec-point.ts';

/**
 * The receiving side of a compact JWE sealed with ECDH-ES + A256GCM. The key
 * agreement and the Concat KDF run in the HSM (only the per-message CEK
 * leaves it); the plaintext is released only after the GCM tag verifies.
 */

/** One of our private keys that may open envelopes, addressed by its HSM id. */
export interface DecryptionKey {
  hsmId: string;
  crv: EcCurve;
  kid: string | undefined;
}

/** Finds the decryption key an envelope names. Undefined = unknown: refused. */
export type DecryptionKeyResolver = (kid: string | undefined) => Promise<DecryptionKey | undefined>;

export interface OpenOptions {
  hsm: Pick<Hsm, 'deriveConcatKdf'>;
  kdf: KdfMode;
  resolveKey: DecryptionKeyResolver;
}

export interface OpenedJwe {
  header: Record<string, unknown>;
  plaintext: Buffer;
  /** The kid of our key that opened it. */
  kid: string | undefined;
}

const CEK_BYTES = 32; // A256GCM

/** Derive the CEK in the HSM: ECDH with our key and the epk, then Concat KDF (RFC 7518 §4.6). */
export function deriveCek(
  hsm: Pick<Hsm, 'deriveConcatKdf'>,
  key: Pick<DecryptionKey, 'hsmId' | 'crv'>,
  epkPoint: Buffer,
  algorithmId: string,
  apu: Buffer,
  apv: Buffer,
  keyBytes: number,
  kdf: KdfMode,
  secretSuffix?: Buffer,
): Promise<Buffer> {
  const otherInfo = concatKdfOtherInfo(algorithmId, apu, apv, keyBytes * 8);
  return hsm.deriveConcatKdf(key.hsmId, epkPoint, COORD_BYTES[key.crv], otherInfo, keyBytes, kdf, secretSuffix);
}

/**
 * The content key of an accepted header: our decryption key by kid, on the
 * epk's curve, then ECDH and the Concat KDF (in the HSM). Shared by the
 * whole-message and the streaming reader.
 */
export async function contentKey(
  accepted: AcceptedHeader,
  options: Pick<OpenOptions, 'hsm' | 'kdf' | 'resolveKey'>,
  secretSuffix?: Buffer,
): Promise<{ key: DecryptionKey; cek: Buffer }> {
  const key = await options.resolveKey(accepted.kid);
  if (!key)
    throw new GatewayError(
      'JWE_UNKNOWN_KID',
      `kid ${JSON.stringify(accepted.kid ?? null)} is not one of this gateway's encryption keys`,
      { expression: 'header.kid' },
    );
  if (key.crv !== accepted.crv)
    throw new GatewayError('JWE_INVALID_EPK', `epk is on ${accepted.crv} but key ${key.kid} is on ${key.crv}`, {
      expression: 'header.epk',
    });
  const cek = await deriveCek(
    options.hsm,
    key,
    accepted.epkPoint,
    ALLOWED.enc,
    accepted.apu,
    accepted.apv,
    CEK_BYTES,
    options.kdf,
    secretSuffix,
  );
  return { key, cek };
}

export async function openCompactJwe(text: string, options: OpenOptions): Promise<OpenedJwe> {
  const jwe = parseCompactJwe(text);
  const accepted = checkHeader(jwe);
  const { key, cek } = await contentKey(accepted, options);
  return decryptCompact(jwe, key, cek);
}

/** A256GCM with the derived CEK (zeroed afterwards); the plaintext only if the tag verifies. */
export function decryptCompact(jwe: CompactJwe, key: DecryptionKey, cek: Buffer): OpenedJwe {
  try {
    const decipher = createDecipheriv('aes-256-gcm', cek, jwe.iv, { authTagLength: 16 });
    decipher.setAAD(Buffer.from(jwe.protectedB64, 'ascii'));
    decipher.setAuthTag(jwe.tag);
    const head = decipher.update(jwe.ciphertext);
    let tail: Buffer;
    try {
      tail = decipher.final();
    } catch {
      head.fill(0); // never release unauthenticated plaintext
      throw new GatewayError('JWE_DECRYPT_FAILED', 'the envelope does not decrypt: authentication tag mismatch', {
        expression: 'tag',
      });
    }
    return { header: jwe.header, plaintext: tail.length ? Buffer.concat([head, tail]) : head, kid: key.kid };
  } finally {
    cek.fill(0);
  }
}
