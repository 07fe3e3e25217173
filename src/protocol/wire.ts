import { createHash } from 'node:crypto';

/**
 * Wire protocol v1 between gateways (docs/PROTOCOL.md is the normative text).
 * Shared by the outbound and inbound sides so that they cannot drift.
 */
export const PROTOCOL = {
  /** typ of the signed content (inner JWS). */
  contentTyp: 'exchange+jwt',
  /** typ of the recipient's signed receipt. */
  receiptTyp: 'exchange-receipt+jwt',
  signatureAlg: 'ES256',
  keyAgreementAlg: 'ECDH-ES',
  contentEncryption: 'A256GCM',
  /** cty of the envelope: its plaintext is a JWT (the signed content). */
  envelopeCty: 'JWT',
  mediaType: 'application/jose',
  fhirContentType: 'application/fhir+json',
  inboxPath: '/inbox',
} as const;

/** Claims of the signed content (inner JWS payload). */
export interface ExchangeClaims {
  iss: string; // sender org id
  aud: string; // recipient org id
  iat: number;
  jti: string; // delivery id, UUID, unique per recipient
  exchange: string; // exchange id
  content_type: string; // application/fhir+json (or application/dicom for imaging manifests)
  /** HL7 PurposeOfUse codes (v3-ActReason) the submission stated; absent from senders before this claim. */
  purpose_of_use?: string[];
  content: unknown; // the Bundle (JSON)
}

/** Claims of the receipt the recipient signs. */
export interface ReceiptClaims {
  iss: string; // recipient org
  aud: string; // sender org
  iat: number;
  jti: string; // receipt id
  delivery: string; // the envelope's jti
  digest: string; // "sha-256=" + base64url(SHA-256(envelope bytes as received))
  status: 'accepted';
}

/** The receipt digest of an envelope, over its bytes exactly as sent/received. */
export function envelopeDigest(envelope: string | Uint8Array): string {
  return 'sha-256=' + createHash('sha256').update(envelope).digest('base64url');
}

/** Member order of the signed claims; `content` is always last, so a recipient can cut it out verbatim. */
const CLAIM_ORDER = ['iss', 'aud', 'iat', 'jti', 'exchange', 'content_type', 'purpose_of_use'] as const;

/**
 * The JWS payload of the signed content: the claims in a fixed order with no
 * insignificant whitespace, then `"content":` followed by the accepted bundle
 * bytes VERBATIM, then `}`. Nothing is re-serialised, so the recipient can
 * hand on exactly the bytes the sender accepted.
 */
export function claimsPayload(claims: Omit<ExchangeClaims, 'content'>, contentJson: string): string {
  const head: Record<string, unknown> = {};
  for (const k of CLAIM_ORDER) head[k] = claims[k];
  return `${JSON.stringify(head).slice(0, -1)},"content":${contentJson}}`;
}
