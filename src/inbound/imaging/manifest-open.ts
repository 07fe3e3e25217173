import { checkPurposeOfUse } from '../../fhir/purpose-of-use.ts';
import { openCompactJwe, type DecryptionKeyResolver } from '../../jose/open.ts';
import { openHybridCompactJwe, type KemKeyResolver } from '../../jose/pq/hybrid-jwe.ts';
import { verifySignedDualJws } from '../../protocol/dual-signed-jws.ts';
import { checkManifestContent } from '../../protocol/imaging-manifest.ts';
import {
  requireEnvelopeVersion,
  requireSignatureVersion,
  type ProtocolVersion,
} from '../../protocol/imaging-protocol.ts';
import { checkExchangeClaims } from '../../protocol/signed-jws.ts';
import { verifySignedContent, type ContentChecks, type VerifiedContent } from '../../protocol/signed-content.ts';
import { PROTOCOL, type ExchangeClaims } from '../../protocol/wire.ts';
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
  /** v2: the sender's ML-DSA-65 key that verified the second signature. */
  senderPqKid?: string;
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
    requireSignatureVersion(protocol, jws, 'part[2]');
    if (protocol === 1) return { verified: await verifySignedContent(jws, checks), encKid: opened.kid };
    return { ...(await verifyDualManifest(jws, checks)), encKid: opened.kid };
  } finally {
    opened.plaintext.fill(0);
  }
}

/** verifySignedContent for a dual-signed manifest: both signatures, then the same claim checks. */
async function verifyDualManifest(
  jws: string,
  checks: ContentChecks,
): Promise<{ verified: VerifiedContent; senderPqKid: string }> {
  const v = await verifySignedDualJws(jws, {
    directory: checks.directory,
    typ: PROTOCOL.contentTyp,
    what: 'the manifest',
    expression: 'part[2]',
    maxDepth: checks.maxDepth,
  });
  checkExchangeClaims(v.claims, checks);
  checkManifestContent(v.claims);
  const claims = v.claims as unknown as ExchangeClaims;
  const purposeOfUse =
    claims.purpose_of_use === undefined
      ? undefined
      : checkPurposeOfUse(claims.purpose_of_use, { expression: 'purpose_of_use', code: 'CLAIMS_INVALID' });
  return {
    verified: {
      claims,
      purposeOfUse,
      payloadText: v.payloadText,
      senderKid: v.senderKid,
      senderJwk: v.senderJwk,
      sender: v.sender,
    },
    senderPqKid: v.senderPqKid,
  };
}
