import { randomUUID } from 'node:crypto';
import { GatewayError } from '../errors.ts';
import { envelopeDigest, PROTOCOL, type ReceiptClaims } from './wire.ts';
import { signJson } from '../jose/jws.ts';
import type { Signer } from '../jose/signer.ts';
import { verifyCompact, type KeyResolver } from '../jose/verify.ts';
import { duplicateMember } from '../jose/duplicate-members.ts';
import { isJsonJws, signDual, verifyDual, type PqSigner } from '../jose/pq/dual-jws.ts';

/**
 * The recipient's signed receipt (docs/PROTOCOL.md): a compact JWS
 * {alg ES256, kid, typ exchange-receipt+jwt} over ReceiptClaims. It binds the
 * delivery id and the digest of the envelope bytes exactly as received.
 * For a protocol v2 message the same claims are signed twice (ES256 and
 * ML-DSA-65, JSON serialization, PROTOCOL.md §14.4).
 */
export interface ReceiptInput {
  /** The recipient (us). */
  iss: string;
  /** The sender. */
  aud: string;
  /** The envelope's jti (delivery id). */
  delivery: string;
  /** The envelope exactly as received, or its envelopeDigest(). */
  envelope?: string | Uint8Array;
  digest?: string;
  now?: Date;
  receiptId?: string;
}

export async function signReceipt(
  signer: Signer,
  input: ReceiptInput,
  /** Given for a v2 message: the receipt is dual-signed with it. */
  pqSigner?: PqSigner,
): Promise<{ receipt: string; claims: ReceiptClaims }> {
  const digest = input.digest ?? (input.envelope !== undefined ? envelopeDigest(input.envelope) : undefined);
  if (!digest) throw new Error('signReceipt needs the envelope or its digest');
  const claims: ReceiptClaims = {
    iss: input.iss,
    aud: input.aud,
    iat: Math.floor((input.now ?? new Date()).getTime() / 1000),
    jti: input.receiptId ?? randomUUID(),
    delivery: input.delivery,
    digest,
    status: 'accepted',
  };
  const receipt = pqSigner
    ? await signDual(signer, pqSigner, JSON.stringify(claims), { typ: PROTOCOL.receiptTyp })
    : await signJson(signer, claims, { typ: PROTOCOL.receiptTyp });
  return { receipt, claims };
}

export interface ReceiptExpectation {
  /** The recipient org the receipt must come from. */
  iss: string;
  /** The sender org (us, when verifying on the outbound side). */
  aud: string;
  delivery: string;
  /** envelopeDigest() of the envelope as sent. */
  digest: string;
}

/**
 * Verify a receipt's signature (ES256 only, typ checked) against the
 * recipient's key, then every claim against what was sent. Any mismatch is
 * RECEIPT_INVALID-grade: the caller must not mark the delivery delivered.
 * A receipt in the JSON serialization must carry both signatures (ES256 and
 * ML-DSA-65), each resolved by `key` from its own header; which form the
 * caller requires is its rule (src/protocol/v2-acceptance.ts).
 */
export async function verifyReceipt(
  receipt: string,
  key: KeyResolver,
  expected: ReceiptExpectation,
): Promise<ReceiptClaims> {
  const { payload } = isJsonJws(receipt)
    ? await verifyDual(receipt, { classical: key, pq: key }, { typ: PROTOCOL.receiptTyp })
    : await verifyCompact(receipt, key, {
        typ: PROTOCOL.receiptTyp,
        algorithms: [PROTOCOL.signatureAlg],
      });
  const text = Buffer.from(payload).toString('utf8');
  let claims: Partial<ReceiptClaims>;
  try {
    claims = JSON.parse(text) as Partial<ReceiptClaims>;
  } catch {
    throw new GatewayError('RECEIPT_INVALID', 'receipt payload is not JSON');
  }
  const repeated = duplicateMember(text);
  if (repeated !== undefined)
    throw new GatewayError('RECEIPT_INVALID', `receipt payload repeats the member ${JSON.stringify(repeated)}`);
  const mismatch = (name: keyof ReceiptExpectation) => claims[name] !== expected[name];
  for (const name of ['iss', 'aud', 'delivery', 'digest'] as const) {
    if (mismatch(name))
      throw new GatewayError('RECEIPT_MISMATCH', `receipt ${name} does not match what was sent`, {
        expression: `receipt.${name}`,
      });
  }
  if (claims.status !== 'accepted')
    throw new GatewayError('RECEIPT_INVALID', 'receipt status is not "accepted"', { expression: 'receipt.status' });
  if (typeof claims.jti !== 'string' || typeof claims.iat !== 'number')
    throw new GatewayError('RECEIPT_INVALID', 'receipt lacks jti or iat');
  return claims as ReceiptClaims;
}
