import { GatewayError } from '../errors.ts';
import { signJson } from '../jose/jws.ts';
import { isJsonJws, signDual, type PqSigner } from '../jose/pq/dual-jws.ts';
import type { Signer } from '../jose/signer.ts';
import { verifySignedDualJws } from './signed-dual-jws.ts';
import { checkExchangeClaims, verifySignedJws, type ClaimWindow, type SignedJwsChecks } from './signed-jws.ts';
import { PROCESSED_VIA, PROTOCOL, type ProcessedReceiptClaims } from './wire.ts';

/**
 * The processed receipt (docs/PROTOCOL.md §13): the recipient's second signed
 * receipt, sent once its EHR has taken a delivery in. A JWS of its own typ,
 * so that it can never pass for a transport receipt nor one for it: compact
 * for a v1 message, dual-signed (ES256 + ML-DSA-65, §14.3) for a v2 one.
 */
export type ProcessedReceiptInput = Omit<ProcessedReceiptClaims, 'status'>;

/** Members in this order, every one a string or a number; with `pq` (a v2 message) signed twice. */
export function signProcessedReceipt(signer: Signer, input: ProcessedReceiptInput, pq?: PqSigner): Promise<string> {
  const claims: ProcessedReceiptClaims = {
    iss: input.iss,
    aud: input.aud,
    iat: input.iat,
    jti: input.jti,
    exchange: input.exchange,
    delivery: input.delivery,
    digest: input.digest,
    receipt: input.receipt,
    status: 'processed',
    processed_at: input.processed_at,
    via: input.via,
  };
  return pq
    ? signDual(signer, pq, JSON.stringify(claims), { typ: PROTOCOL.processedTyp })
    : signJson(signer, claims, { typ: PROTOCOL.processedTyp });
}

export interface ProcessedReceiptChecks extends ClaimWindow {
  directory: SignedJwsChecks['directory'];
}

const invalid = (message: string, member: string) =>
  new GatewayError('RECEIPT_INVALID', message, { expression: `receipt.${member}` });

/**
 * Verify a partner's processed receipt: the signed-JWS rules of the signed
 * content (typ, algorithm, a sender in the directory and a key it publishes
 * now), aud, the iat window, and the shape of every claim. Whether it names
 * a delivery we sent to that partner is the caller's to check.
 */
export async function verifyProcessedReceipt(
  jws: string,
  checks: ProcessedReceiptChecks,
): Promise<ProcessedReceiptClaims> {
  const rules = { directory: checks.directory, typ: PROTOCOL.processedTyp, what: 'the processed receipt' };
  // Which form the delivery's version asks for is the caller's rule (it knows the delivery).
  const v = isJsonJws(jws) ? await verifySignedDualJws(jws, rules) : await verifySignedJws(jws, rules);
  const c = v.claims;
  checkExchangeClaims(c, checks);
  if (c.status !== 'processed') throw invalid('status must be "processed"', 'status');
  for (const member of ['delivery', 'digest', 'receipt'] as const)
    if (typeof c[member] !== 'string' || c[member] === '') throw invalid(`${member} must be a string`, member);
  if (typeof c.processed_at !== 'number' || !Number.isFinite(c.processed_at))
    throw invalid('processed_at must be a number', 'processed_at');
  if (!(PROCESSED_VIA as readonly unknown[]).includes(c.via))
    throw invalid(`via must be one of ${PROCESSED_VIA.join(', ')}`, 'via');
  return c as unknown as ProcessedReceiptClaims;
}
