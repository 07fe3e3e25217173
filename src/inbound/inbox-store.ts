import type { Queryable } from '../db/pool.ts';
import type { PartnerJwk } from '../directory/directory.ts';
import { jwkThumbprint } from '../directory/partner-key-log.ts';
import type { GatewayContext } from '../gateway-context.ts';
import { required } from '../required.ts';
import type { ResponseCode } from '../fhir/message-header.ts';
import { auditAppendSql, auditColumns, type AuditInput } from '../audit/append.ts';
import { FORWARD_TASK, jobSpecsSql } from '../queue/jobs.ts';

/** What the inbox pipelines use of the gateway context. */
export type InboxContext = Pick<GatewayContext, 'config' | 'pool' | 'hsm' | 'keyring' | 'directory' | 'logger'>;

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
  /** The purpose the sender signed; null when it signed none. */
  purposeOfUse: string[] | null;
  /** A response to one of our deliveries: that delivery, its exchange and the response code. */
  respondsTo: { delivery: string; exchange: string; code: string } | null;
}

export interface InboxMessage extends InboxMetadata {
  /** Its MessageHeader.id, for a message: what a response to it names. */
  messageHeaderId: string | null;
  /** The sealed envelope; null once retention purged it (purgedAt says when). */
  envelope: string | null;
  purgedAt: Date | null;
  encKid: string;
  senderKid: string;
  senderJwk: PartnerJwk;
  /** A protocol v2 message: the sender's ML-DSA-65 key that verified its second signature. */
  senderPqJwk: PartnerJwk | null;
  receipt: string;
}

const META_COLUMNS = `id, sender, jti, exchange_id, envelope_digest, receipt_id, state, received_at, forwarded_at, acknowledged_at, acknowledged_by, purpose_of_use, response_to, response_exchange, response_code`;

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
  purposeOfUse: (r.purpose_of_use as string[] | null) ?? null,
  respondsTo: r.response_to
    ? { delivery: r.response_to as string, exchange: r.response_exchange as string, code: r.response_code as string }
    : null,
});

/** A v2 message's sender ML-DSA key, stored once per key (inbox_sender_pq_keys). */
const SENDER_PQ_JWK =
  '(SELECT k.jwk FROM inbox_sender_pq_keys k WHERE k.thumbprint = m.sender_pq_key) AS sender_pq_jwk';
/** The sealed envelope, in a table of its own (migration 280); none once retention purged it. */
const ENVELOPE = '(SELECT e.envelope FROM inbox_envelopes e WHERE e.message_id = m.id) AS envelope';

const toMessage = (r: Row): InboxMessage => ({
  ...toMeta(r),
  messageHeaderId: r.message_header_id as string | null,
  envelope: r.envelope as string | null,
  purgedAt: r.purged_at as Date | null,
  encKid: r.enc_kid as string,
  senderKid: r.sender_kid as string,
  senderJwk: r.sender_jwk as PartnerJwk,
  senderPqJwk: (r.sender_pq_jwk as PartnerJwk | null) ?? null,
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
  /** Protocol v2: the sender's ML-DSA-65 key that verified the second signature. */
  senderPqJwk?: PartnerJwk | undefined;
  receiptId: string;
  receipt: string;
  receivedAt: Date;
  purposeOfUse: string[] | undefined;
  /** A message's MessageHeader.id: what a response from our EHR names it by. */
  messageHeaderId?: string | undefined;
  /** A response to one of our deliveries: that delivery, its exchange, and MessageHeader.response.code. */
  response?: { delivery: string; exchange: string; code: ResponseCode } | undefined;
}

/** A message to store and the one audit entry that records its receipt. */
export interface AcceptedMessage {
  row: NewInboxMessage;
  audit: AuditInput;
}

/** Named, so each connection plans it once: a batch of one pays the write, not the planning. */
const WRITE_INBOX = 'inbox-write';

/**
 * Store a batch of accepted messages in ONE statement: the messages whose
 * (sender, jti) is not stored yet (within the batch the first of two equal
 * pairs), each one's audit entry with its patient index rows, the entry's
 * leaf index on the message (for evidence requests), and with `forward` one
 * forward job per message (payload: its id). Returns the audit index of
 * each message stored; a message already stored is absent.
 *
 * The replay check reads the statement's snapshot, so a concurrent
 * transaction may insert the same pair first: this statement then fails on
 * the unique index, writing nothing (isConcurrentReplay); written again, in
 * a new transaction, the other row is visible and the message a duplicate.
 */
export async function writeInboxMessages(
  db: Queryable,
  items: readonly AcceptedMessage[],
  options: { forward: { maxAttempts: number } | undefined },
  now = new Date(),
): Promise<Map<string, number>> {
  if (items.length === 0) return new Map();
  const ms = items.map((i) => i.row);
  const col = <K extends keyof NewInboxMessage>(k: K) => ms.map((m) => m[k]);
  const audit = auditColumns(
    items.map((i) => i.audit),
    now,
  );
  const { rows } = await db.query<{ id: string; idx: string }>({
    name: WRITE_INBOX,
    text: `WITH u AS (
       -- A message's purpose codes as one text (letters only, so commas join them): unnest cannot carry arrays of arrays.
       SELECT * FROM unnest($5::uuid[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::jsonb[], $14::uuid[], $15::text[], $16::timestamptz[], $17::text[], $18::text[], $19::uuid[], $20::uuid[], $21::text[], $31::jsonb[], $32::text[])
         WITH ORDINALITY AS u(id, sender, jti, exchange_id, envelope, digest, enc_kid, sender_kid, sender_jwk, receipt_id, receipt, received_at, purpose, message_header_id, response_to, response_exchange, response_code, sender_pq_jwk, sender_pq_key, ord)
     ), fresh AS (
       SELECT DISTINCT ON (u.sender, u.jti) u.* FROM u
        WHERE NOT EXISTS (SELECT 1 FROM inbox_messages m WHERE m.sender = u.sender AND m.jti = u.jti)
        ORDER BY u.sender, u.jti, u.ord
     ), pq_keys AS (
       INSERT INTO inbox_sender_pq_keys (thumbprint, jwk)
       SELECT DISTINCT ON (sender_pq_key) sender_pq_key, sender_pq_jwk FROM fresh WHERE sender_pq_key IS NOT NULL
       ON CONFLICT (thumbprint) DO NOTHING
     ), entries AS (
       -- One entry per message, in the batch's order: an entry's ord is its message's.
       SELECT e.* FROM unnest($22::text[], $23::text[], $24::bytea[], $25::bytea[], $26::text[], $27::text[]) WITH ORDINALITY AS e(b, a, bb, ab, t, o, ord)
        WHERE e.ord IN (SELECT ord FROM fresh)
     ), patients AS (
       SELECT * FROM unnest($28::bigint[], $29::bytea[]) AS p(ord, blind)
     ), ${auditAppendSql('entries', '$4::timestamptz', 'patients')}, stored AS (
       INSERT INTO inbox_messages (id, sender, jti, exchange_id, envelope_digest, enc_kid, sender_kid, sender_jwk, receipt_id, receipt, received_at, purpose_of_use, message_header_id, response_to, response_exchange, response_code, sender_pq_key, audit_idx)
       SELECT f.id, f.sender, f.jti, f.exchange_id, f.digest, f.enc_kid, f.sender_kid, f.sender_jwk, f.receipt_id, f.receipt, f.received_at,
              string_to_array(f.purpose, ','), f.message_header_id, f.response_to, f.response_exchange, f.response_code, f.sender_pq_key, n.idx
         FROM fresh f JOIN numbered n ON n.ord = f.ord
       RETURNING id, audit_idx
     ), sealed AS (
       -- The envelopes in their own table (migration 280), so a purge leaves only envelope chunks to free.
       INSERT INTO inbox_envelopes (message_id, envelope) SELECT f.id, f.envelope FROM fresh f WHERE f.id IN (SELECT id FROM stored)
     ), jobs AS (
       -- The condition outside the call: without forwarding the function is not called at all.
       SELECT count(*) AS n FROM graphile_worker.add_jobs(${jobSpecsSql(FORWARD_TASK, '(SELECT id FROM stored)')}) WHERE $30::boolean
     )
     SELECT s.id, s.audit_idx AS idx, (SELECT n FROM jobs) AS jobs, (SELECT count(*) FROM logged) AS logged FROM stored s`,
    values: [
      FORWARD_TASK,
      options.forward?.maxAttempts ?? 0,
      null,
      now,
      col('id'),
      col('sender'),
      col('jti'),
      col('exchangeId'),
      col('envelope'),
      col('envelopeDigest'),
      col('encKid'),
      col('senderKid'),
      ms.map((m) => JSON.stringify(m.senderJwk)),
      col('receiptId'),
      col('receipt'),
      col('receivedAt'),
      ms.map((m) => m.purposeOfUse?.join(',') ?? null),
      ms.map((m) => m.messageHeaderId ?? null),
      ms.map((m) => m.response?.delivery ?? null),
      ms.map((m) => m.response?.exchange ?? null),
      ms.map((m) => m.response?.code ?? null),
      audit.before,
      audit.after,
      audit.beforeBytes,
      audit.afterBytes,
      audit.types,
      audit.outcomes,
      audit.patientOrds,
      audit.patientBlinds,
      options.forward !== undefined,
      ms.map((m) => (m.senderPqJwk ? JSON.stringify(m.senderPqJwk) : null)),
      ms.map((m) => (m.senderPqJwk ? jwkThumbprint(m.senderPqJwk) : null)),
    ],
  });
  return new Map(rows.map((r) => [r.id, Number(r.idx)]));
}

/** The failure of writeInboxMessages when another transaction stored one of its (sender, jti) pairs first. */
export function isConcurrentReplay(err: unknown): boolean {
  return (err as { constraint?: unknown } | null)?.constraint === 'inbox_messages_sender_jti';
}

/**
 * The received message a response from our EHR answers: the one with this
 * MessageHeader.id among those `viewer` may see (so a client can answer only
 * what it could read). Two senders using the same id make it ambiguous: none.
 */
export async function findAnsweredMessage(
  db: Queryable,
  messageHeaderId: string,
  viewer: InboxViewer,
): Promise<{ messageId: string; sender: string; delivery: string; exchange: string } | undefined> {
  const args: unknown[] = [messageHeaderId];
  const { rows } = await db.query<{ id: string; sender: string; jti: string; exchange_id: string }>(
    `SELECT m.id, m.sender, m.jti, m.exchange_id FROM inbox_messages m
      WHERE m.message_header_id = $1 AND ${visibleTo(viewer, args)} ORDER BY m.received_at LIMIT 2`,
    args,
  );
  const r = rows[0];
  if (!r || rows.length > 1) return undefined;
  return { messageId: r.id, sender: r.sender, delivery: r.jti, exchange: r.exchange_id };
}

export async function findBySenderJti(
  db: Queryable,
  sender: string,
  jti: string,
): Promise<{ id: string; envelopeDigest: string; receipt: string; auditIndex?: number } | undefined> {
  const { rows } = await db.query<{ id: string; envelope_digest: string; receipt: string; audit_idx: string | null }>(
    'SELECT id, envelope_digest, receipt, audit_idx FROM inbox_messages WHERE sender = $1 AND jti = $2',
    [sender, jti],
  );
  const r = rows[0];
  return (
    r && {
      id: r.id,
      envelopeDigest: r.envelope_digest,
      receipt: r.receipt,
      ...(r.audit_idx === null ? {} : { auditIndex: Number(r.audit_idx) }),
    }
  );
}

/**
 * Who looks at the inbox. A client sees the messages of the partners its
 * registration routes to it (auth_clients.receives_from; '*' = every
 * partner, empty = none); `all` (the admin scope) sees every message.
 */
export interface InboxViewer {
  clientId: string;
  all: boolean;
}

/**
 * The routing rule as one SQL condition on `inbox_messages m`, evaluated in
 * the query that reads the messages: the client's list is an uncorrelated
 * subquery (read once per query, so listing keeps the newest-first index
 * scan), overlapping {sender, '*'}. Nothing is cached, so a routing change
 * applies to the next request; an unknown or disabled client yields NULL and
 * sees nothing.
 */
function visibleTo(viewer: InboxViewer, args: unknown[]): string {
  if (viewer.all) return 'true';
  return `coalesce(ARRAY[m.sender, '*'] && (SELECT c.receives_from FROM auth_clients c WHERE c.id = $${args.push(viewer.clientId)} AND c.enabled), false)`;
}

/** One message and whether `viewer` may see it, in one query (undefined: no such id). */
export async function getInboxMessageFor(
  db: Queryable,
  id: string,
  viewer: InboxViewer,
): Promise<{ message: InboxMessage; visible: boolean } | undefined> {
  const args: unknown[] = [id];
  const { rows } = await db.query<Row>(
    `SELECT m.*, ${ENVELOPE}, ${SENDER_PQ_JWK}, ${visibleTo(viewer, args)} AS visible FROM inbox_messages m WHERE m.id = $1`,
    args,
  );
  return rows[0] && { message: toMessage(rows[0]), visible: rows[0].visible === true };
}

export async function getInboxMessage(db: Queryable, id: string): Promise<InboxMessage | undefined> {
  const { rows } = await db.query<Row>(
    `SELECT m.*, ${ENVELOPE}, ${SENDER_PQ_JWK} FROM inbox_messages m WHERE m.id = $1`,
    [id],
  );
  return rows[0] && toMessage(rows[0]);
}

export interface InboxQuery {
  state?: InboxState;
  sender?: string;
  limit: number;
  /** Keyset pagination: messages received strictly before this (time, id). */
  before?: { receivedAt: Date; id: string };
}

/** The messages `viewer` may see, newest first; the others are simply not there. */
export async function listInboxMessages(db: Queryable, q: InboxQuery, viewer: InboxViewer): Promise<InboxMetadata[]> {
  const args: unknown[] = [];
  const where: string[] = [visibleTo(viewer, args)];
  if (q.state) where.push(`state = $${args.push(q.state)}`);
  if (q.sender) where.push(`sender = $${args.push(q.sender)}`);
  if (q.before) where.push(`(received_at, id) < ($${args.push(q.before.receivedAt)}, $${args.push(q.before.id)})`);
  const { rows } = await db.query<Row>(
    `SELECT ${META_COLUMNS} FROM inbox_messages m WHERE ${where.join(' AND ')}
     ORDER BY received_at DESC, id DESC LIMIT $${args.push(q.limit)}`,
    args,
  );
  return rows.map(toMeta);
}

/**
 * Mark acknowledged by `viewer` (idempotent) if it may see the message.
 * Returns the metadata after the change, 'not-visible' for a message routed
 * to other clients, or undefined if no such message.
 */
export async function acknowledgeInboxMessage(
  db: Queryable,
  id: string,
  viewer: InboxViewer,
  now: Date,
): Promise<{ meta: InboxMetadata; changed: boolean } | 'not-visible' | undefined> {
  const args: unknown[] = [id, viewer.clientId, now];
  const { rows } = await db.query<Row>(
    `UPDATE inbox_messages m SET state = 'acknowledged', acknowledged_at = $3, acknowledged_by = $2
     WHERE m.id = $1 AND m.state <> 'acknowledged' AND ${visibleTo(viewer, args)} RETURNING ${META_COLUMNS}`,
    args,
  );
  if (rows[0]) return { meta: toMeta(rows[0]), changed: true };
  const again: unknown[] = [id];
  const { rows: existing } = await db.query<Row>(
    `SELECT ${META_COLUMNS}, ${visibleTo(viewer, again)} AS visible FROM inbox_messages m WHERE m.id = $1`,
    again,
  );
  if (!existing[0]) return undefined;
  return existing[0].visible === true ? { meta: toMeta(existing[0]), changed: false } : 'not-visible';
}

export async function markForwarded(db: Queryable, id: string, now: Date): Promise<void> {
  await db.query(
    `UPDATE inbox_messages SET state = CASE WHEN state = 'received' THEN 'forwarded' ELSE state END, forwarded_at = $2, forward_error = NULL, forward_attempts = forward_attempts + 1 WHERE id = $1`,
    [id, now],
  );
}

export async function recordForwardFailure(db: Queryable, id: string, error: string): Promise<void> {
  await db.query(
    'UPDATE inbox_messages SET forward_attempts = forward_attempts + 1, forward_error = $2 WHERE id = $1',
    [id, error.slice(0, 200)],
  );
}

/**
 * Messages sealed to our encryption key `kid` that the local EHR has not
 * acknowledged yet. Destroying that key would make them unreadable, so key
 * rotation must not destroy an enc key while this is above zero.
 */
export async function unacknowledgedSealedTo(db: Queryable, kid: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM inbox_messages WHERE enc_kid = $1 AND state <> 'acknowledged' AND purged_at IS NULL`,
    [kid],
  );
  return required(rows[0], 'count(*) returns one row').n;
}
