import type pg from 'pg';
import type { PartnerJwk } from '../directory/directory.ts';
import type { GatewayContext } from '../context.ts';

/** What the inbox pipelines use of the gateway context. */
export type InboxContext = Pick<GatewayContext, 'config' | 'pool' | 'hsm' | 'keyring' | 'directory' | 'logger'>;

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

export type InboxState = 'received' | 'forwarded' | 'acknowledged';
export const INBOX_STATES: readonly InboxState[] = ['received', 'forwarded', 'acknowledged'];

/** What the local EHR may see without opening anything: metadata, no content. */
export interface InboxMetadata {
  id: string;
  sender: string;
  jti: string;
  exchangeId: string;
  envelopeDigest: string;
  receiptId: string;
  state: InboxState;
  receivedAt: Date;
  forwardedAt: Date | null;
  acknowledgedAt: Date | null;
  acknowledgedBy: string | null;
}

export interface InboxMessage extends InboxMetadata {
  envelope: string;
  encKid: string;
  senderKid: string;
  senderJwk: PartnerJwk;
  receipt: string;
}

const META_COLUMNS = `id, sender, jti, exchange_id, envelope_digest, receipt_id, state, received_at, forwarded_at, acknowledged_at, acknowledged_by`;

type Row = Record<string, unknown>;

const toMeta = (r: Row): InboxMetadata => ({
  id: r.id as string,
  sender: r.sender as string,
  jti: r.jti as string,
  exchangeId: r.exchange_id as string,
  envelopeDigest: r.envelope_digest as string,
  receiptId: r.receipt_id as string,
  state: r.state as InboxState,
  receivedAt: r.received_at as Date,
  forwardedAt: r.forwarded_at as Date | null,
  acknowledgedAt: r.acknowledged_at as Date | null,
  acknowledgedBy: r.acknowledged_by as string | null,
});

const toMessage = (r: Row): InboxMessage => ({
  ...toMeta(r),
  envelope: r.envelope as string,
  encKid: r.enc_kid as string,
  senderKid: r.sender_kid as string,
  senderJwk: r.sender_jwk as PartnerJwk,
  receipt: r.receipt as string,
});

export interface NewInboxMessage {
  id: string;
  sender: string;
  jti: string;
  exchangeId: string;
  envelope: string;
  envelopeDigest: string;
  encKid: string;
  senderKid: string;
  senderJwk: PartnerJwk;
  receiptId: string;
  receipt: string;
  receivedAt: Date;
}

/**
 * Insert the messages whose (sender, jti) is not stored yet, in one
 * statement. Returns the ids actually inserted. A concurrent insert of the
 * same pair waits for the other transaction, so exactly one wins; within one
 * statement the first of two equal pairs wins.
 */
export async function insertInboxMessages(db: Queryable, ms: NewInboxMessage[]): Promise<Set<string>> {
  if (ms.length === 0) return new Set();
  const col = <K extends keyof NewInboxMessage>(k: K) => ms.map((m) => m[k]);
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO inbox_messages (id, sender, jti, exchange_id, envelope, envelope_digest, enc_kid, sender_kid, sender_jwk, receipt_id, receipt, received_at)
     SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::uuid[], $11::text[], $12::timestamptz[])
     ON CONFLICT (sender, jti) DO NOTHING
     RETURNING id`,
    [col('id'), col('sender'), col('jti'), col('exchangeId'), col('envelope'), col('envelopeDigest'), col('encKid'), col('senderKid'),
      ms.map((m) => JSON.stringify(m.senderJwk)), col('receiptId'), col('receipt'), col('receivedAt')],
  );
  return new Set(rows.map((r) => r.id));
}

export async function findBySenderJti(db: Queryable, sender: string, jti: string): Promise<{ id: string; envelopeDigest: string; receipt: string } | undefined> {
  const { rows } = await db.query<{ id: string; envelope_digest: string; receipt: string }>(
    'SELECT id, envelope_digest, receipt FROM inbox_messages WHERE sender = $1 AND jti = $2',
    [sender, jti],
  );
  const r = rows[0];
  return r && { id: r.id, envelopeDigest: r.envelope_digest, receipt: r.receipt };
}

export async function getInboxMessage(db: Queryable, id: string): Promise<InboxMessage | undefined> {
  const { rows } = await db.query<Row>('SELECT * FROM inbox_messages WHERE id = $1', [id]);
  return rows[0] && toMessage(rows[0]);
}

export interface InboxQuery {
  state?: InboxState;
  sender?: string;
  limit: number;
  /** Keyset pagination: messages received strictly before this (time, id). */
  before?: { receivedAt: Date; id: string };
}

export async function listInboxMessages(db: Queryable, q: InboxQuery): Promise<InboxMetadata[]> {
  const where: string[] = [];
  const args: unknown[] = [];
  if (q.state) where.push(`state = $${args.push(q.state)}`);
  if (q.sender) where.push(`sender = $${args.push(q.sender)}`);
  if (q.before) where.push(`(received_at, id) < ($${args.push(q.before.receivedAt)}, $${args.push(q.before.id)})`);
  const { rows } = await db.query<Row>(
    `SELECT ${META_COLUMNS} FROM inbox_messages ${where.length ? 'WHERE ' + where.join(' AND ') : ''}
     ORDER BY received_at DESC, id DESC LIMIT $${args.push(q.limit)}`,
    args,
  );
  return rows.map(toMeta);
}

/** Mark acknowledged (idempotent); returns the metadata after the change, or undefined if no such message. */
export async function acknowledgeInboxMessage(db: Queryable, id: string, clientId: string, now: Date): Promise<{ meta: InboxMetadata; changed: boolean } | undefined> {
  const { rows } = await db.query<Row>(
    `UPDATE inbox_messages SET state = 'acknowledged', acknowledged_at = $3, acknowledged_by = $2
     WHERE id = $1 AND state <> 'acknowledged' RETURNING ${META_COLUMNS}`,
    [id, clientId, now],
  );
  if (rows[0]) return { meta: toMeta(rows[0]), changed: true };
  const { rows: existing } = await db.query<Row>(`SELECT ${META_COLUMNS} FROM inbox_messages WHERE id = $1`, [id]);
  return existing[0] && { meta: toMeta(existing[0]), changed: false };
}

export async function markForwarded(db: Queryable, id: string, now: Date): Promise<void> {
  await db.query(`UPDATE inbox_messages SET state = CASE WHEN state = 'received' THEN 'forwarded' ELSE state END, forwarded_at = $2, forward_error = NULL, forward_attempts = forward_attempts + 1 WHERE id = $1`, [id, now]);
}

export async function recordForwardFailure(db: Queryable, id: string, error: string): Promise<void> {
  await db.query('UPDATE inbox_messages SET forward_attempts = forward_attempts + 1, forward_error = $2 WHERE id = $1', [id, error.slice(0, 200)]);
}

/**
 * Messages sealed to our encryption key `kid` that the local EHR has not
 * acknowledged yet. Destroying that key would make them unreadable, so key
 * rotation must not destroy an enc key while this is above zero.
 */
export async function unacknowledgedSealedTo(db: Queryable, kid: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM inbox_messages WHERE enc_kid = $1 AND state <> 'acknowledged'`, [kid]);
  return rows[0]!.n;
}
