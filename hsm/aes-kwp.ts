import { HsmError } from './errors.ts';

/**
 * AES key wrap with padding (RFC 5649) built from single AES block
 * operations, for a module that offers AES-ECB but not CKM_AES_KEY_WRAP_PAD
 * (p11-kit's remoting does not carry it). The block cipher runs in the token
 * with the wrapping key; only the RFC's arithmetic is here. The output is the
 * same bytes CKM_AES_KEY_WRAP_PAD gives, so either way unwraps the other's.
 */
const AIV = Buffer.from('a65959a6', 'hex');

type Block = (block: Buffer) => Buffer;

export function kwpWrap(plain: Buffer, encrypt: Block): Buffer {
  const n = Math.max(1, Math.ceil(plain.length / 8));
  const p = Buffer.alloc(n * 8);
  plain.copy(p);
  const a = Buffer.alloc(8);
  AIV.copy(a);
  a.writeUInt32BE(plain.length, 4);
  if (n === 1) return encrypt(Buffer.concat([a, p]));
  // R[1..n] in place in r, the semiblock i at i * 8.
  const r = Buffer.from(p);
  p.fill(0);
  let acc: Buffer = a;
  for (let j = 0; j <= 5; j++) {
    for (let i = 0; i < n; i++) {
      const b = encrypt(Buffer.concat([acc, r.subarray(i * 8, i * 8 + 8)]));
      acc = xorCounter(b.subarray(0, 8), n * j + i + 1);
      b.copy(r, i * 8, 8, 16);
    }
  }
  return Buffer.concat([acc, r]);
}

export function kwpUnwrap(wrapped: Buffer, decrypt: Block): Buffer {
  if (wrapped.length < 16 || wrapped.length % 8 !== 0) throw integrityError();
  const n = wrapped.length / 8 - 1;
  let acc: Buffer;
  let p: Buffer;
  if (n === 1) {
    const b = decrypt(wrapped);
    acc = b.subarray(0, 8);
    p = b.subarray(8);
  } else {
    acc = wrapped.subarray(0, 8);
    const r = Buffer.from(wrapped.subarray(8));
    for (let j = 5; j >= 0; j--) {
      for (let i = n - 1; i >= 0; i--) {
        const b = decrypt(Buffer.concat([xorCounter(acc, n * j + i + 1), r.subarray(i * 8, i * 8 + 8)]));
        acc = b.subarray(0, 8);
        b.copy(r, i * 8, 8, 16);
      }
    }
    p = r;
  }
  const length = acc.readUInt32BE(4);
  const padded = p.length;
  const ok =
    acc.subarray(0, 4).equals(AIV) &&
    length > padded - 8 &&
    length <= padded &&
    p.subarray(length).every((byte) => byte === 0);
  if (!ok) {
    p.fill(0);
    throw integrityError();
  }
  return p.subarray(0, length);
}

function xorCounter(half: Buffer, t: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(half.readBigUInt64BE(0) ^ BigInt(t));
  return out;
}

const integrityError = () =>
  new HsmError('HSM_OPERATION_FAILED', 'HSM key unwrapping failed: the wrapped key fails its RFC 5649 integrity check');
