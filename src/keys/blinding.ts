import type { Hsm } from '../../hsm/hsm.ts';

/**
 * The blinding key's public face: none. It is an HMAC key, so the inventory
 * row records only its type, and its kid is a key check value: the first 16
 * bytes of its HMAC over a fixed text no normalised identifier can equal (an
 * identifier always holds a "|"). The check value names the key without
 * revealing anything about the blinds it makes, and lets the boot self-test
 * prove that the database row and the token key belong together.
 */
export const BLINDING_JWK = { kty: 'oct' } as const;

const CHECK_TEXT = Buffer.from('fhir-gateway blinding key check value', 'utf8');

export async function blindingKid(hsm: Pick<Hsm, 'hmacSha256'>, hsmId: string): Promise<string> {
  const [mac] = await hsm.hmacSha256(hsmId, [CHECK_TEXT]);
  if (!mac) throw new Error('the HSM answered no HMAC for the key check value');
  return mac.subarray(0, 16).toString('base64url');
}
