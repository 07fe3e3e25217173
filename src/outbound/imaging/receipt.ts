import type { Partner } from '../../directory/directory.ts';
import type { KeyScope } from '../../directory/signing-keys.ts';
import { GatewayError } from '../../errors.ts';
import { fromB64u } from '../../jose/base64url.ts';
import { duplicateMember } from '../../jose/duplicate-members.ts';
import { isJsonJws, PQ_SIGNATURE_ALG, verifyDual } from '../../jose/pq/dual-jws.ts';
import { importPublicJwk } from '../../jose/public-key.ts';
import type { KeyResolver } from '../../jose/verify.ts';
import type { ImagingReceiptClaims } from '../../protocol/imaging-manifest.ts';
import type { ProtocolVersion } from '../../protocol/imaging-protocol.ts';
import { verifyReceipt } from '../../protocol/receipt.ts';
import { PROTOCOL } from '../../protocol/wire.ts';
import type { DeliveryContext } from '../deliver.ts';

/**
 * The recipient's receipt for one of our imaging deliveries, checked in the
 * delivery's version (PROTOCOL.md §10.6, §14.4): a v1 delivery needs a
 * compact ES256 receipt; a v2 delivery a dual-signed one (ES256 + ML-DSA-65,
 * JSON serialization), so a compact receipt for it is refused as a
 * downgrade. Either way every claim must bind what was sent, including the
 * content's digest.
 */
export interface ImagingReceiptExpectation {
  protocol: ProtocolVersion;
  delivery: string;
  /** The manifest envelope's digest as sent. */
  digest: string;
  contentDigest: string;
}

const mismatch = (name: string) =>
  new GatewayError('RECEIPT_MISMATCH', `receipt ${name} does not match what was sent`, {
    expression: `receipt.${name}`,
  });

/** The signer's keys as of the receipt's own iat (read before verification; the signature is still checked). */
function scopeOf(payloadB64: string): KeyScope {
  try {
    const iat: unknown = JSON.parse(fromB64u(payloadB64).toString('utf8')).iat;
    if (typeof iat === 'number' && Number.isFinite(iat)) return { signedAt: new Date(iat * 1000) };
  } catch {
    // Not JSON: the verification says so.
  }
  return 'current';
}

export async function verifyImagingReceipt(
  ctx: Pick<DeliveryContext, 'directory' | 'config'>,
  partner: Partner,
  text: string,
  want: ImagingReceiptExpectation,
): Promise<ImagingReceiptClaims> {
  const expected = { iss: partner.id, aud: ctx.config.org, delivery: want.delivery, digest: want.digest };
  const dual = isJsonJws(text);
  if (want.protocol === 2 && !dual)
    throw new GatewayError(
      'PROTOCOL_DOWNGRADE',
      'the delivery was protocol v2 but the receipt is a compact (v1) JWS; a v2 receipt is dual-signed (PROTOCOL.md §14.4)',
    );
  if (want.protocol === 1 && dual)
    throw new GatewayError('PROTOCOL_MIXED', 'the delivery was protocol v1 but the receipt is dual-signed (v2)');
  const key =
    (scope: KeyScope): KeyResolver =>
    async (header) => {
      if (!header.kid) throw new GatewayError('JWS_MALFORMED', 'receipt header has no kid');
      const jwk = await ctx.directory.verificationKey(partner.id, header.kid, scope);
      // Each signature by a key of its own kind: ES256 by an EC key, ML-DSA-65 by an AKP key.
      if ((header.alg === PQ_SIGNATURE_ALG) !== (jwk.kty === 'AKP'))
        throw new GatewayError('JWS_SIGNATURE_INVALID', `receipt key ${header.kid} is not a ${header.alg} key`);
      return importPublicJwk(jwk);
    };
  const claims = dual
    ? checkClaims(await verifyDualReceipt(text, key), expected)
    : ((await verifyReceipt(text, key(scopeOf(text.split('.')[1] ?? '')), expected)) as Partial<ImagingReceiptClaims>);
  if (claims.content_digest !== want.contentDigest)
    throw new GatewayError('RECEIPT_MISMATCH', 'receipt content_digest does not match the content sent');
  return claims as ImagingReceiptClaims;
}

async function verifyDualReceipt(text: string, key: (scope: KeyScope) => KeyResolver): Promise<string> {
  let payloadB64: unknown;
  try {
    payloadB64 = (JSON.parse(text) as { payload?: unknown }).payload;
  } catch {
    payloadB64 = undefined;
  }
  if (typeof payloadB64 !== 'string') throw new GatewayError('JWS_MALFORMED', 'the receipt is not a JWS');
  const resolver = key(scopeOf(payloadB64));
  const { payload } = await verifyDual(text, { classical: resolver, pq: resolver }, { typ: PROTOCOL.receiptTyp });
  return Buffer.from(payload).toString('utf8');
}

/** The claims of a verified dual receipt, held to the rules of a compact one (src/protocol/receipt.ts). */
function checkClaims(
  text: string,
  expected: { iss: string; aud: string; delivery: string; digest: string },
): Partial<ImagingReceiptClaims> {
  let claims: Partial<ImagingReceiptClaims>;
  try {
    claims = JSON.parse(text) as Partial<ImagingReceiptClaims>;
  } catch {
    throw new GatewayError('RECEIPT_INVALID', 'receipt payload is not JSON');
  }
  const repeated = duplicateMember(text);
  if (repeated !== undefined)
    throw new GatewayError('RECEIPT_INVALID', `receipt payload repeats the member ${JSON.stringify(repeated)}`);
  for (const name of ['iss', 'aud', 'delivery', 'digest'] as const)
    if (claims[name] !== expected[name]) throw mismatch(name);
  if (claims.status !== 'accepted')
    throw new GatewayError('RECEIPT_INVALID', 'receipt status is not "accepted"', { expression: 'receipt.status' });
  if (typeof claims.jti !== 'string' || typeof claims.iat !== 'number')
    throw new GatewayError('RECEIPT_INVALID', 'receipt lacks jti or iat');
  return claims;
}
