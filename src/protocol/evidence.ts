import { GatewayError } from '../errors.ts';
import { isPlainIdentifier, isUuid } from '../ids.ts';
import { signJson } from '../jose/jws.ts';
import type { Signer } from '../jose/signer.ts';
import { envelopeDigest, PROTOCOL } from './wire.ts';

/**
 * Delivery evidence between gateways (docs/PROTOCOL.md section 12): the
 * sender asks the receiver for proof that the receiver's own audit log holds
 * the entry of each receipt it signed, and for the receiver's newest
 * checkpoint with a consistency proof from the one the sender holds.
 * Shared by both sides, so that they cannot drift.
 */
export const EVIDENCE = {
  /** typ of the sender's signed evidence request (the POST body). */
  requestTyp: 'evidence-request+jwt',
  /** typ of the receiver's statement of its audit keys, signed with its signing key. */
  auditKeysTyp: 'audit-keys+jwt',
  /** Appended to the partner's inbox URL: {inbox}/evidence. */
  pathSuffix: '/evidence',
  /** On a 200 answer of the inbox: the leaf index of the receiver's audit entry that records the receipt. */
  auditIndexHeader: 'audit-entry-index',
  /** Receipts one request may name. */
  maxReceipts: 100,
  /** The answer's largest size this gateway reads. */
  maxAnswerBytes: 4 * 1024 * 1024,
} as const;

/** The claims of an evidence request. */
export interface EvidenceRequestClaims {
  iss: string;
  aud: string;
  iat: number;
  jti: string;
  /** The tree size of the receiver's newest checkpoint the sender holds; 0 for none. */
  size: number;
  /** Receipt ids (the receipts' jti) whose audit entry the sender asks for. */
  receipts: string[];
}

/** The claims of the receiver's audit-keys statement. */
export interface AuditKeysClaims {
  iss: string;
  iat: number;
  /** The log origin: the first line of its checkpoints and the key name of their signatures. */
  origin: string;
  keys: Array<{ kty: string; crv?: string; x?: string; y?: string; kid: string }>;
}

/** One receipt's proof: the receiver's audit entry verbatim and its inclusion in the answer's checkpoint. */
export interface ReceiptEntryProof {
  receipt: string;
  index: number;
  entry: string;
  /** Base64 (standard) RFC 6962 hashes, bottom-up. */
  proof: string[];
}

/** The receiver's answer (application/json). */
export interface EvidenceAnswer {
  origin: string;
  /** The receiver's newest checkpoint, a C2SP signed note. */
  checkpoint: string;
  /** A compact JWS (typ audit-keys+jwt) by the receiver's signing key naming the keys that sign checkpoints. */
  keys: string;
  /** PROOF(size, checkpoint size) when 0 < size < checkpoint size; else empty. */
  consistency: string[];
  receipts: ReceiptEntryProof[];
  /** Receipts the receiver knows whose entry the checkpoint does not cover yet: ask again later. */
  pending: string[];
  /** Receipt ids that are not receipts the receiver gave the requester (or recorded before evidence existed). */
  unknown: string[];
}

/** The digest an audit entry binds a receipt with: over the compact JWS's ASCII bytes, as the envelope digest. */
export const receiptDigest = (receiptJws: string): string => envelopeDigest(receiptJws);

/** Where a partner answers evidence requests: its inbox URL with /evidence appended. */
export const evidenceUrl = (inboxEndpoint: string): string =>
  `${inboxEndpoint.replace(/\/+$/, '')}${EVIDENCE.pathSuffix}`;

/** The path of this gateway's evidence route. */
export const EVIDENCE_PATH = `${PROTOCOL.inboxPath}${EVIDENCE.pathSuffix}`;

export function signEvidenceRequest(signer: Signer, claims: EvidenceRequestClaims): Promise<string> {
  return signJson(signer, claims, { typ: EVIDENCE.requestTyp });
}

export function signAuditKeys(signer: Signer, claims: AuditKeysClaims): Promise<string> {
  return signJson(signer, claims, { typ: EVIDENCE.auditKeysTyp });
}

const invalid = (message: string, expression: string) => new GatewayError('CLAIMS_INVALID', message, { expression });

/**
 * The request's claims beyond the signature and iss (verified by the caller):
 * aud is us, iat within the clock skew either way (a request is answered at
 * once, never queued), a jti, the known size and up to maxReceipts receipt ids.
 */
export function checkEvidenceRequest(
  c: Record<string, unknown>,
  w: { org: string; clockSkewMs: number; now?: number },
): { size: number; receipts: string[] } {
  if (c.aud !== w.org)
    throw new GatewayError('WRONG_AUDIENCE', `aud ${JSON.stringify(c.aud)} is not this gateway (${w.org})`, {
      expression: 'aud',
    });
  const now = w.now ?? Date.now();
  if (typeof c.iat !== 'number' || !Number.isFinite(c.iat)) throw invalid('iat must be a number', 'iat');
  if (Math.abs(c.iat * 1000 - now) > w.clockSkewMs)
    throw new GatewayError('IAT_OUT_OF_WINDOW', 'iat is further from now than the accepted clock skew', {
      expression: 'iat',
    });
  if (!isPlainIdentifier(c.jti)) throw invalid('jti must be an identifier', 'jti');
  if (!Number.isSafeInteger(c.size) || (c.size as number) < 0)
    throw invalid('size must be a non-negative whole number', 'size');
  const receipts = c.receipts;
  if (
    !Array.isArray(receipts) ||
    receipts.length > EVIDENCE.maxReceipts ||
    !receipts.every((r): r is string => isUuid(r))
  )
    throw invalid(`receipts must be at most ${EVIDENCE.maxReceipts} receipt ids (UUIDs)`, 'receipts');
  return { size: c.size as number, receipts: [...new Set(receipts.map((r) => r.toLowerCase()))] };
}
