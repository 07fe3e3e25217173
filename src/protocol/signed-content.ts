import { GatewayError } from '../errors.ts';
import { checkPurposeOfUse } from '../fhir/purpose-of-use.ts';
import type { Directory, Partner, PartnerJwk } from '../directory/directory.ts';
import { checkExchangeClaims, verifySignedJws, type ClaimWindow, type VerifiedJwsSender } from './signed-jws.ts';
import { verifySignedDualJws } from './signed-dual-jws.ts';
import type { ProtocolVersion } from './v2-acceptance.ts';
import { PROTOCOL, type ExchangeClaims } from './wire.ts';

export { CONTENT_ALGS, claimedSender, publicKeyOf } from './signed-jws.ts';

export interface VerifiedContent {
  claims: ExchangeClaims;
  /** The purpose the sender signed (purpose_of_use), or undefined from a sender that signs none. */
  purposeOfUse: string[] | undefined;
  /** The verified JWS payload text (the claims JSON exactly as signed). */
  payloadText: string;
  senderKid: string;
  /** The sender's public key that verified the signature (kept to re-verify on read). */
  senderJwk: PartnerJwk;
  /** The sender's directory entry, as read for this verification. */
  sender: Partner;
  /** 2: signed twice (PROTOCOL.md §14.3), the ML-DSA-65 key that verified the second signature kept too. */
  protocol: ProtocolVersion;
  senderPq?: { kid: string; jwk: PartnerJwk };
}

export interface ContentChecks extends ClaimWindow {
  directory: Pick<Directory, 'sender' | 'verificationKey'>;
  /** Checks content_type and content instead of the Bundle rules (imaging manifests, whose content is a signed description of the streamed file). */
  checkContent?: (claims: Record<string, unknown>) => void;
  maxDepth?: number;
}

/**
 * Verify the signed content: typ and algorithm allowlist, a sender in the
 * directory, its published key, then aud, iat window and claim shapes.
 */
export async function verifySignedContent(jws: string, checks: ContentChecks): Promise<VerifiedContent> {
  const v = await verifySignedJws(jws, contentJws(checks));
  return { ...verified(v, checks), protocol: 1 };
}

/** verifySignedContent for protocol v2: both signatures (ES256 and ML-DSA-65) by the sender's published keys. */
export async function verifySignedDualContent(jws: string, checks: ContentChecks): Promise<VerifiedContent> {
  const v = await verifySignedDualJws(jws, contentJws(checks));
  return { ...verified(v, checks), protocol: 2, senderPq: { kid: v.senderPqKid, jwk: v.senderPqJwk } };
}

const contentJws = (checks: ContentChecks) => ({
  directory: checks.directory,
  typ: PROTOCOL.contentTyp,
  what: 'the envelope',
  maxDepth: checks.maxDepth,
});

function verified(v: VerifiedJwsSender, checks: ContentChecks): Omit<VerifiedContent, 'protocol'> {
  const claims = checkClaims(v.claims, checks);
  return {
    claims,
    purposeOfUse: signedPurpose(claims),
    payloadText: v.payloadText,
    senderKid: v.senderKid,
    senderJwk: v.senderJwk,
    sender: v.sender,
  };
}

/**
 * purpose_of_use, when the sender signed one: PurposeOfUse codes, else the
 * delivery is refused (CLAIMS_INVALID). Senders before the claim sign none;
 * the receiver then records no purpose (docs/PROTOCOL.md §3).
 */
function signedPurpose(c: ExchangeClaims): string[] | undefined {
  if (c.purpose_of_use === undefined) return undefined;
  return checkPurposeOfUse(c.purpose_of_use, { expression: 'purpose_of_use', code: 'CLAIMS_INVALID' });
}

function checkClaims(c: Record<string, unknown>, checks: ContentChecks): ExchangeClaims {
  checkExchangeClaims(c, checks);
  if (checks.checkContent) {
    checks.checkContent(c);
    return c as unknown as ExchangeClaims;
  }
  if (c.content_type !== PROTOCOL.fhirContentType)
    throw new GatewayError('CLAIMS_INVALID', `content_type must be ${PROTOCOL.fhirContentType}`, {
      expression: 'content_type',
    });
  const content = c.content as { resourceType?: unknown } | null;
  if (!content || typeof content !== 'object' || content.resourceType !== 'Bundle')
    throw new GatewayError('CLAIMS_INVALID', 'content must be a FHIR Bundle', { expression: 'content' });
  return c as unknown as ExchangeClaims;
}
