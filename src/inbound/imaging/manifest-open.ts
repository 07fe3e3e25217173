import { openCompactJwe, type DecryptionKeyResolver } from '../../jose/open.ts';
import { openHybridCompactJwe, type KemKeyResolver } from '../../jose/pq/hybrid-jwe.ts';
import { requireEnvelopeVersion } from '../../protocol/imaging-protocol.ts';
import {
  verifySignedContent,
  verifySignedDualContent,
  type ContentChecks,
  type VerifiedContent,
} from '../../protocol/signed-content.ts';
import { requireSignatureForm, type ProtocolVersion } from '../../protocol/v2-acceptance.ts';
import type { InboxContext } from '../receive.ts';

/**
 * The manifest envelope of an imaging delivery, opened and verified in the
 * delivery's version: v1 an ECDH-ES envelope around a compact JWS; v2 a
 * hybrid envelope (§14.2) around a dual-signed JWS (§14.3), both signatures
 * by the sender's published keys. Either form in the other's place is
 * refused as PROTOCOL_MIXED.
 */
export interface OpenedManifest {
  verified: VerifiedContent;
  /** The kid of our EC key that opened it. */
  encKid: string | undefined;
}

export async function openManifest(
  ctx: Pick<InboxContext, 'hsm' | 'config'>,
  envelope: string,
  protocol: ProtocolVersion,
  keys: { resolveKey: DecryptionKeyResolver; resolveKemKey: KemKeyResolver },
  checks: ContentChecks,
): Promise<OpenedManifest> {
  requireEnvelopeVersion(protocol, envelope, 'part[2]');
  const options = { hsm: ctx.hsm, kdf: ctx.config.hsmKdf, resolveKey: keys.resolveKey };
  const opened =
    protocol === 2
      ? await openHybridCompactJwe(envelope, { ...options, resolveKemKey: keys.resolveKemKey })
      : await openCompactJwe(envelope, options);
  try {
    const jws = opened.plaintext.toString('utf8');
    requireSignatureForm(protocol, jws, 'manifest');
    const verified =
      protocol === 2 ? await verifySignedDualContent(jws, checks) : await verifySignedContent(jws, checks);
    return { verified, encKid: opened.kid };
  } finally {
    opened.plaintext.fill(0);
  }
}
