import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { b64u } from './base64url.ts';
import { HASH_OF, type Signer } from './signer.ts';

export interface JwsHeaderExtras {
  typ?: string;
  cty?: string;
  [name: string]: unknown;
}

/** Compact JWS (RFC 7515) whose signature is made by `signer` (the HSM). */
export async function signCompact(
  signer: Signer,
  payload: Uint8Array | string,
  header: JwsHeaderExtras = {},
): Promise<string> {
  const protectedHeader = b64u(JSON.stringify({ ...header, alg: signer.alg, kid: signer.kid }));
  const input = `${protectedHeader}.${b64u(payload)}`;
  const signature = await signer.sign(Buffer.from(input, 'ascii'));
  return `${input}.${b64u(signature)}`;
}

/** Compact JWS over a JSON claims object. */
export function signJson(signer: Signer, claims: object, header: JwsHeaderExtras = {}): Promise<string> {
  return signCompact(signer, JSON.stringify(claims), header);
}

/**
 * Detached JWS with an unencoded payload (RFC 7797: b64=false) over a
 * stream: the signing input is hashed as the bytes pass, so content of any
 * size is signed without being held in memory or base64-encoded twice.
 * Returns "header..signature" (the payload travels separately).
 */
export async function signDetachedStream(
  signer: Signer,
  content: Readable,
  header: JwsHeaderExtras = {},
): Promise<{ jws: string; length: number }> {
  const protectedHeader = b64u(
    JSON.stringify({ ...header, alg: signer.alg, kid: signer.kid, b64: false, crit: ['b64'] }),
  );
  const hash = createHash(HASH_OF[signer.alg]).update(`${protectedHeader}.`, 'ascii');
  let length = 0;
  for await (const chunk of content) {
    hash.update(chunk as Buffer);
    length += (chunk as Buffer).length;
  }
  const signature = await signer.signDigest(hash.digest());
  return { jws: `${protectedHeader}..${b64u(signature)}`, length };
}
