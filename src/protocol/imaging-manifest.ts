import { randomUUID } from 'node:crypto';
import { GatewayError } from '../errors.ts';
import { signJson } from '../jose/jws.ts';
import { signDual, type PqSigner } from '../jose/pq/dual-jws.ts';
import type { Signer } from '../jose/signer.ts';
import { PROTOCOL, type ReceiptClaims } from './wire.ts';

/**
 * Imaging on the wire (docs/PROTOCOL.md §8 is the normative text). The
 * content (DICOM bytes) travels as its own streamed compact JWE; a signed
 * manifest binding its SHA-256 and length travels as a normal envelope.
 */
export const IMAGING = {
  /** The imaging inbox is the partner's inbox URL + this suffix. */
  inboxSuffix: '/imaging',
  dicom: 'application/dicom',
  /** Media type of one delivery: the manifest envelope, then the content JWE. */
  deliveryType: 'multipart/related',
} as const;

/** The content type of several instances framed as one multipart/related body. */
export const studyContentType = (boundary: string) =>
  `multipart/related; type="application/dicom"; boundary=${boundary}`;

const STUDY_TYPE_RE = /^multipart\/related; type="application\/dicom"; boundary=[0-9A-Za-z_.-]{1,70}$/;

/** content_type values a manifest may carry (also the content JWE's cty). */
export function isImagingContentType(v: unknown): v is string {
  return v === IMAGING.dicom || (typeof v === 'string' && STUDY_TYPE_RE.test(v));
}

/** The manifest's `content` claim. */
export interface ManifestContent {
  /** base64url(SHA-256(content plaintext)). */
  sha256: string;
  /** Plaintext length in bytes. */
  length: number;
  /** FHIR R4 ImagingStudy describing the series and instances. */
  imagingStudy: Record<string, unknown>;
}

export function checkManifestContent(claims: Record<string, unknown>): ManifestContent {
  if (!isImagingContentType(claims.content_type))
    throw new GatewayError(
      'CLAIMS_INVALID',
      'content_type must be application/dicom or multipart/related; type="application/dicom"',
      { expression: 'content_type' },
    );
  const c = claims.content as Partial<ManifestContent> | null;
  if (!c || typeof c !== 'object')
    throw new GatewayError('CLAIMS_INVALID', 'content must be the imaging manifest object', { expression: 'content' });
  if (typeof c.sha256 !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(c.sha256))
    throw new GatewayError('CLAIMS_INVALID', 'content.sha256 must be base64url of 32 bytes', {
      expression: 'content.sha256',
    });
  if (typeof c.length !== 'number' || !Number.isSafeInteger(c.length) || c.length < 0)
    throw new GatewayError('CLAIMS_INVALID', 'content.length must be a whole number', { expression: 'content.length' });
  const study = c.imagingStudy as { resourceType?: unknown } | undefined;
  if (!study || typeof study !== 'object' || study.resourceType !== 'ImagingStudy')
    throw new GatewayError('CLAIMS_INVALID', 'content.imagingStudy must be a FHIR ImagingStudy', {
      expression: 'content.imagingStudy',
    });
  return c as ManifestContent;
}

/** An imaging receipt: the protocol's receipt claims plus content_digest ("sha-256=" + base64url of the content plaintext, verified). */
export interface ImagingReceiptClaims extends ReceiptClaims {
  content_digest: string;
}

/** Compact ES256 for a v1 delivery; with `pq` (a v2 delivery) dual-signed ES256 + ML-DSA-65 (§14.4). */
export async function signImagingReceipt(
  signer: Signer,
  r: { iss: string; aud: string; delivery: string; digest: string; contentDigest: string; now?: Date },
  pq?: PqSigner,
): Promise<{ receipt: string; claims: ImagingReceiptClaims }> {
  const claims: ImagingReceiptClaims = {
    iss: r.iss,
    aud: r.aud,
    iat: Math.floor((r.now ?? new Date()).getTime() / 1000),
    jti: randomUUID(),
    delivery: r.delivery,
    digest: r.digest,
    status: 'accepted',
    content_digest: r.contentDigest,
  };
  const header = { typ: PROTOCOL.receiptTyp };
  const receipt = pq
    ? await signDual(signer, pq, JSON.stringify(claims), header)
    : await signJson(signer, claims, header);
  return { receipt, claims };
}
