import type { Partner } from '../../directory/directory.ts';
import { scopeOfSignedItem } from '../../directory/signing-keys.ts';
import { GatewayError } from '../../errors.ts';
import { PQ_SIGNATURE_ALG } from '../../jose/pq/dual-jws.ts';
import { importPublicJwk } from '../../jose/public-key.ts';
import type { ImagingReceiptClaims } from '../../protocol/imaging-manifest.ts';
import { verifyReceipt } from '../../protocol/receipt.ts';
import { requireReceiptForm, type ProtocolVersion } from '../../protocol/v2-acceptance.ts';
import type { DeliveryContext } from '../deliver.ts';

/**
 * The recipient's receipt for one of our imaging deliveries, checked in the
 * delivery's version (PROTOCOL.md §10.6, §10.8): a v1 delivery needs a
 * compact ES256 receipt; a v2 delivery a dual-signed one (a compact receipt
 * for it is refused as a downgrade). Every claim must bind what was sent,
 * including the content's digest. The same rule as a bundle's receipt
 * (src/outbound/transmit.ts), which reads the version from the envelope it
 * sends; an imaging delivery is streamed, so its version is given.
 */
export interface ImagingReceiptExpectation {
  protocol: ProtocolVersion;
  delivery: string;
  /** The manifest envelope's digest as sent. */
  digest: string;
  contentDigest: string;
}

export async function verifyImagingReceipt(
  ctx: Pick<DeliveryContext, 'directory' | 'config'>,
  partner: Partner,
  text: string,
  want: ImagingReceiptExpectation,
): Promise<ImagingReceiptClaims> {
  requireReceiptForm(want.protocol, text);
  const claims = await verifyReceipt(
    text,
    async (header) => {
      if (!header.kid) throw new GatewayError('JWS_MALFORMED', 'receipt header has no kid');
      const jwk = await ctx.directory.verificationKey(partner.id, header.kid, scopeOfSignedItem(text));
      // Each signature by a key of its own kind: ES256 by an EC key, ML-DSA-65 by an AKP key.
      if ((header.alg === PQ_SIGNATURE_ALG) !== (jwk.kty === 'AKP'))
        throw new GatewayError('JWS_SIGNATURE_INVALID', `receipt key ${header.kid} is not a ${header.alg} key`);
      return importPublicJwk(jwk);
    },
    { iss: partner.id, aud: ctx.config.org, delivery: want.delivery, digest: want.digest },
  );
  if ((claims as Partial<ImagingReceiptClaims>).content_digest !== want.contentDigest)
    throw new GatewayError('RECEIPT_MISMATCH', 'receipt content_digest does not match the content sent');
  return claims as ImagingReceiptClaims;
}
