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
  /** typ of the recipient's processed receipt: its EHR has taken the content in (a business acknowledgement). */
  processedTyp: 'exchange-processed+jwt',
  signatureAlg: 'ES256',
  keyAgreementAlg: 'ECDH-ES',
  contentEncryption: 'A256GCM',
  /** cty of the envelope: its plaintext is a JWT (the signed content). */
  envelopeCty: 'JWT',
  mediaType: 'application/jose',
  fhirContentType: 'application/fhir+json',
  inboxPath: '/inbox',
  /** Where processed receipts are posted: the partner's inbox URL plus this suffix. */
  processedSuffix: '/processed',
} as const;

/** Claims of the signed content (inner JWS payload). */
export interface ExchangeClaims {
  iss: string; // sender org id
  aud: string; // recipient org id
  iat: number;
  jti: string; // delivery id, UUID, unique per recipient
  exchange: string; // exchange id
  /** A response message: the delivery id (jti) of the message it answers, as the responder received it. */
  response_to?: string;
  /** A response message: the exchange id of the message it answers. */
  response_exchange?: string;
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

/** How the recipient's EHR took a delivery in: acknowledged after a pull, or accepted when it was forwarded. */
export type ProcessedVia = 'acknowledged' | 'forwarded';
export const PROCESSED_VIA: readonly ProcessedVia[] = ['acknowledged', 'forwarded'];

/** Claims of the processed receipt the recipient signs once its EHR has taken a delivery in. */
export interface ProcessedReceiptClaims {
  iss: string; // recipient org
  aud: string; // sender org
  iat: number;
  jti: string; // processed receipt id
  exchange: string; // the sender's exchange id
  delivery: string; // the envelope's jti
  digest: string; // the same digest as the transport receipt's
  receipt: string; // the jti of the transport receipt for the same envelope
  status: 'processed';
  processed_at: number; // when the EHR took it in, seconds since the epoch
  via: ProcessedVia;
}

/** The receipt digest of an envelope, over its bytes exactly as sent/received. */
export function envelopeDigest(envelope: string | Uint8Array): string {
  return 'sha-256=' + createHash('sha256').update(envelope).digest('base64url');
}

/** Member order of the signed claims; `content` is always last, so a recipient can cut it out verbatim. */
const CLAIM_ORDER = [
  'iss',
  'aud',
  'iat',
  'jti',
  'exchange',
  'response_to',
  'response_exchange',
  'content_type',
  'purpose_of_use',
] as const;

/**
 * The JWS payload of the signed content: the claims in a fixed order with no
 * insignificant whitespace, then `"content":` followed by the accepted bundle
 * bytes VERBATIM, then `}`. Nothing is re-serialised, so the recipient can
 * hand on exactly the bytes the sender accepted. The response members are
 * left out unless the content is a response message.
 */
export function claimsPayload(claims: Omit<ExchangeClaims, 'content'>, contentJson: string): string {
  const head: Record<string, unknown> = {};
  for (const k of CLAIM_ORDER) head[k] = claims[k];
  return `${JSON.stringify(head).slice(0, -1)},"content":${contentJson}}`;
}
