import type { Queryable } from '../db/pool.ts';
import { GatewayError } from '../errors.ts';

/** Where each payload kind keeps one delivery per recipient of an exchange. */
export type DeliveryTable = 'deliveries' | 'imaging_deliveries';

/** The submission an Idempotency-Key was first used for. */
export interface FirstSubmission {
  id: string;
  contentDigest: string;
  /** The purpose it was sent for; null for exchanges recorded before purposes were. */
  purposeOfUse: string[] | null;
}

/** What a repeat asks for: the same content, recipients and purpose as the first, or it is no repeat. */
export interface Wanted {
  contentDigest: string;
  partnerIds: readonly string[];
  purposeOfUse: readonly string[];
}

/** What made a submission a repeat: the Idempotency-Key header, or the message's own identity. */
export interface RepeatKey {
  /** How the answer names it, e.g. "this Idempotency-Key", "this Bundle.identifier". */
  label: string;
  expression: string;
}

export const IDEMPOTENCY_KEY: RepeatKey = { label: 'this Idempotency-Key', expression: 'Idempotency-Key' };

/** A repeated message: by Bundle.identifier or MessageHeader.id, named as the client wrote it. */
export const messageRepeat = (m: { expression: string }): RepeatKey => ({
  label: `this ${m.expression === 'Bundle.identifier' ? 'Bundle.identifier' : 'MessageHeader.id'}`,
  expression: m.expression,
});

const DIFFERENT = {
  content: 'a different body',
  recipients: 'different recipients',
  purpose: 'another purpose of use',
};

export const idempotencyMismatch = (what: keyof typeof DIFFERENT, by: RepeatKey = IDEMPOTENCY_KEY) =>
  new GatewayError(
    'UNPROCESSABLE',
    `${by.label} was already used for ${DIFFERENT[what]}; ${by === IDEMPOTENCY_KEY ? 'use a new key' : 'give a new message a new identity'} for a new request`,
    { expression: by.expression },
  );

/**
 * A repeated Idempotency-Key (or message identity) is a replay only if it
 * names the same content for the same recipients and purpose; answering
 * anything else with the first exchange would tell the client that a
 * recipient was sent a record it never got, or for a reason never stated.
 */
export async function replayMismatch(
  db: Queryable,
  table: DeliveryTable,
  first: FirstSubmission,
  wanted: Wanted,
  by: RepeatKey = IDEMPOTENCY_KEY,
): Promise<GatewayError | undefined> {
  if (first.contentDigest !== wanted.contentDigest) return idempotencyMismatch('content', by);
  const purpose = first.purposeOfUse;
  if (
    purpose &&
    (purpose.length !== wanted.purposeOfUse.length || purpose.some((c, i) => c !== wanted.purposeOfUse[i]))
  )
    return idempotencyMismatch('purpose', by);
  const { rows } = await db.query<{ partner_id: string }>(
    `SELECT DISTINCT partner_id FROM ${table} WHERE exchange_id = $1 ORDER BY partner_id`,
    [first.id],
  );
  const sent = rows.map((r) => r.partner_id);
  const ids = [...new Set(wanted.partnerIds)].sort();
  const same = sent.length === ids.length && sent.every((p, i) => p === ids[i]);
  return same ? undefined : idempotencyMismatch('recipients', by);
}
