import { GatewayError } from '../errors.ts';
import { canonicalB64uBytes } from './base64url.ts';
import { duplicateMember } from './duplicate-members.ts';
import { isPointOnCurve, type EcCurve } from './ec-point.ts';

/**
 * Strict parsing of a compact JWE (RFC 7516 §7.1) and the receiver's header
 * allowlist. Everything here runs before any key is touched, so a hostile
 * envelope costs us a JSON parse and nothing more.
 */
export interface CompactJwe {
  /** The protected header exactly as received: it is the AAD of the cipher. */
  protectedB64: string;
  header: Record<string, unknown>;
  encryptedKey: Buffer;
  iv: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

/** Bytes of a field element (and so of Z) per curve. */
export const COORD_BYTES: Record<EcCurve, number> = { 'P-256': 32, 'P-384': 48 };

export const ALLOWED = { alg: 'ECDH-ES', enc: 'A256GCM' } as const;

/** Members the protocol allows in the protected header; anything else is refused rather than ignored. */
const KNOWN_MEMBERS = new Set(['alg', 'enc', 'kid', 'epk', 'cty', 'typ', 'apu', 'apv']);

const malformed = (message: string, expression?: string) => new GatewayError('JWE_MALFORMED', message, { expression });

export function parseCompactJwe(text: string): CompactJwe {
  const parts = text.split('.');
  if (parts.length !== 5) throw malformed(`not a compact JWE: ${parts.length} parts instead of 5`);
  const names = ['protected header', 'encrypted key', 'initialization vector', 'ciphertext', 'authentication tag'];
  const [headerBytes, encryptedKey, iv, ciphertext, tag] = parts.map((p, i) => {
    const bytes = canonicalB64uBytes(p);
    if (!bytes) throw malformed(`the ${names[i]} is not canonical base64url`);
    return bytes;
  }) as [Buffer, Buffer, Buffer, Buffer, Buffer];
  const protectedB64 = parts[0] as string;
  if (protectedB64 === '') throw malformed('the protected header is empty');
  const headerText = headerBytes.toString('utf8');
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch {
    throw malformed('the protected header is not JSON');
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header))
    throw malformed('the protected header is not a JSON object');
  const repeated = duplicateMember(headerText);
  if (repeated !== undefined)
    throw malformed(`the protected header repeats the member ${JSON.stringify(repeated)}`, `header.${repeated}`);
  return { protectedB64, header: header as Record<string, unknown>, encryptedKey, iv, ciphertext, tag };
}

export interface AcceptedHeader {
  kid: string | undefined;
  /** The sender's ephemeral public key as an uncompressed point 04||x||y. */
  epkPoint: Buffer;
  crv: EcCurve;
  apu: Buffer;
  apv: Buffer;
}

/** What one key-agreement profile accepts: its alg and any header members beyond the classical set. */
export interface HeaderProfile {
  alg: string;
  extraMembers: ReadonlySet<string>;
}

const CLASSICAL: HeaderProfile = { alg: ALLOWED.alg, extraMembers: new Set() };

/** The header allowlist: only ECDH-ES + A256GCM (or the profile's alg), no zip, no crit, an epk that is a valid point. */
export function checkHeader(jwe: CompactJwe, profile: HeaderProfile = CLASSICAL): AcceptedHeader {
  const h = jwe.header;
  if (h.alg !== profile.alg)
    throw new GatewayError('JWE_UNSUPPORTED_ALG', `alg ${JSON.stringify(h.alg)} is not accepted; only ${profile.alg}`, {
      expression: 'header.alg',
    });
  if (h.enc !== ALLOWED.enc)
    throw new GatewayError('JWE_UNSUPPORTED_ALG', `enc ${JSON.stringify(h.enc)} is not accepted; only ${ALLOWED.enc}`, {
      expression: 'header.enc',
    });
  if ('zip' in h)
    throw new GatewayError('JWE_ZIP_UNSUPPORTED', 'compressed JWE (zip) is not accepted', { expression: 'header.zip' });
  for (const name of Object.keys(h)) {
    if (!KNOWN_MEMBERS.has(name) && !profile.extraMembers.has(name))
      throw new GatewayError('JWE_UNSUPPORTED_ALG', `header member ${JSON.stringify(name)} is not accepted`, {
        expression: `header.${name}`,
      });
  }
  if (h.kid !== undefined && (typeof h.kid !== 'string' || h.kid.length === 0 || h.kid.length > 256))
    throw malformed('kid must be a non-empty string', 'header.kid');
  // Direct key agreement: RFC 7516 §5.1 step 6, the encrypted key must be empty.
  if (jwe.encryptedKey.length !== 0) throw malformed('the encrypted key must be empty with ECDH-ES', 'encrypted_key');
  if (jwe.iv.length !== 12) throw malformed('the A256GCM initialization vector must be 96 bits', 'iv');
  if (jwe.tag.length !== 16) throw malformed('the A256GCM authentication tag must be 128 bits', 'tag');
  const { point, crv } = epkPoint(h.epk);
  return {
    kid: h.kid as string | undefined,
    epkPoint: point,
    crv,
    apu: partyInfo(h.apu, 'apu'),
    apv: partyInfo(h.apv, 'apv'),
  };
}

function partyInfo(value: unknown, name: string): Buffer {
  if (value === undefined) return Buffer.alloc(0);
  const bytes = typeof value === 'string' ? canonicalB64uBytes(value) : undefined;
  if (!bytes) throw malformed(`${name} must be base64url`, `header.${name}`);
  return bytes;
}

const badEpk = (message: string) => new GatewayError('JWE_INVALID_EPK', message, { expression: 'header.epk' });

/** The ephemeral key must be a public EC key on a curve we use, and a point on that curve. */
function epkPoint(epk: unknown): { point: Buffer; crv: EcCurve } {
  if (epk === null || typeof epk !== 'object' || Array.isArray(epk)) throw badEpk('epk is missing or not a JWK');
  const { kty, crv, x, y, d } = epk as Record<string, unknown>;
  if (kty !== 'EC') throw badEpk(`epk kty ${JSON.stringify(kty)} is not EC`);
  if (crv !== 'P-256' && crv !== 'P-384') throw badEpk(`epk curve ${JSON.stringify(crv)} is not accepted`);
  if (d !== undefined) throw badEpk('epk carries a private key');
  const size = COORD_BYTES[crv];
  const xb = typeof x === 'string' ? canonicalB64uBytes(x) : undefined;
  const yb = typeof y === 'string' ? canonicalB64uBytes(y) : undefined;
  if (!xb || !yb) throw badEpk('epk coordinates must be base64url');
  if (xb.length !== size || yb.length !== size) throw badEpk(`epk coordinates must be ${size} bytes on ${crv}`);
  // Invalid-curve attacks: a point off the curve would leak our private key through the agreement.
  if (!isPointOnCurve(crv, xb, yb)) throw badEpk(`epk is not a point on ${crv}`);
  return { point: Buffer.concat([Buffer.from([0x04]), xb, yb]), crv };
}

const lengthPrefixed = (data: Buffer) => {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  return Buffer.concat([len, data]);
};

/**
 * RFC 7518 §4.6.2 Concat KDF OtherInfo: AlgorithmID || PartyUInfo ||
 * PartyVInfo || SuppPubInfo (keydatalen in bits). With direct ECDH-ES the
 * AlgorithmID is the enc value.
 */
export function concatKdfOtherInfo(algorithmId: string, apu: Buffer, apv: Buffer, keyBits: number): Buffer {
  const suppPub = Buffer.alloc(4);
  suppPub.writeUInt32BE(keyBits);
  return Buffer.concat([
    lengthPrefixed(Buffer.from(algorithmId, 'ascii')),
    lengthPrefixed(apu),
    lengthPrefixed(apv),
    suppPub,
  ]);
}
