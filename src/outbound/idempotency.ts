import type { Queryable } from '../db/pool.ts';
import { GatewayError } from '../errors.ts';

/** Where each payload kind keeps one delivery per recipient of an exchange. */
export type DeliveryTable = 'deliveries' | 'imaging_deliveries';

/** The submission an Idempotency-Key was first used for. */
export interface FirstSubmission {
  id: string;
  contentDigest: string;
}

export const idempotencyMismatch = (what: 'content' | 'recipients') =>
  new GatewayError(
    'UNPROCESSABLE',
    `this Idempotency-Key was already used for ${what === 'content' ? 'a different body' : 'different recipients'}; use a new key for a new request`,
    { expression: 'Idempotency-Key' },
  );

/**
 * A repeated Idempotency-Key is a replay only if it names the same content
 * for the same recipients; answering anything else with the first exchange
 * would tell the client that a recipient was sent a record it never got.
 */
export async function replayMismatch(
  db: Queryable,
  table: DeliveryTable,
  first: FirstSubmission,
  contentDigest: string,
  partnerIds: readonly string[],
): Promise<GatewayError | undefined> {
  if (first.contentDigest !== contentDigest) return idempotencyMismatch('content');
  const { rows } = await db.query<{ partner_id: string }>(
    `SELECT DISTINCT partner_id FROM ${table} WHERE exchange_id = $1 ORDER BY partner_id`,
    [first.id],
  );
  const sent = rows.map((r) => r.partner_id);
  const wanted = [...new Set(partnerIds)].sort();
  const same = sent.length === wanted.length && sent.every((p, i) => p === wanted[i]);
  return same ? undefined : idempotencyMismatch('recipients');
}
