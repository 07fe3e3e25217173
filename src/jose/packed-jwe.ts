import { GatewayError } from '../errors.ts';
import { isB64u } from './base64url.ts';

/**
 * A compact JWE at rest in binary form: the same bytes on the wire, a
 * quarter smaller in the database (and its WAL), because the ciphertext and
 * tag are kept decoded. Layout:
 *   uint16 BE  length of the prefix
 *   prefix     "protected.encrypted_key.iv." exactly as in the compact form (ASCII)
 *   bytes      the ciphertext
 *   16 bytes   the tag
 * unpack(pack(jwe)) === jwe for every compact JWE this gateway seals
 * (canonical base64url, 128-bit tag); pack() refuses anything else, so a
 * stored envelope always comes back byte for byte, and its digest with it.
 */
const TAG = 16;

const notPackable = (why: string) => new GatewayError('INTERNAL', `cannot store the envelope in packed form: ${why}`);

export function packCompactJwe(jwe: string): Buffer {
  const parts = jwe.split('.');
  const [, , , ciphertext, tag] = parts;
  if (parts.length !== 5 || ciphertext === undefined || tag === undefined) throw notPackable('not a compact JWE');
  if (!isB64u(ciphertext) || !isB64u(tag)) throw notPackable('ciphertext or tag is not base64url');
  const prefix = Buffer.from(`${parts[0]}.${parts[1]}.${parts[2]}.`, 'latin1');
  const ct = Buffer.from(ciphertext, 'base64url');
  const t = Buffer.from(tag, 'base64url');
  // Only canonical base64url survives the round trip; anything else is kept out rather than altered.
  if (t.length !== TAG || ct.toString('base64url') !== ciphertext || t.toString('base64url') !== tag)
    throw notPackable('non-canonical base64url or a tag that is not 128 bits');
  if (prefix.length > 0xffff) throw notPackable('header too long');
  const head = Buffer.allocUnsafe(2);
  head.writeUInt16BE(prefix.length);
  return Buffer.concat([head, prefix, ct, t]);
}

export function unpackCompactJwe(packed: Buffer): string {
  if (packed.length < 2 + TAG) throw new GatewayError('INTERNAL', 'a stored envelope is truncated');
  const n = packed.readUInt16BE(0);
  if (packed.length < 2 + n + TAG) throw new GatewayError('INTERNAL', 'a stored envelope is truncated');
  const prefix = packed.subarray(2, 2 + n).toString('latin1');
  const ct = packed.subarray(2 + n, packed.length - TAG);
  const tag = packed.subarray(packed.length - TAG);
  return `${prefix}${ct.toString('base64url')}.${tag.toString('base64url')}`;
}
