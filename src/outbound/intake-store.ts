import type pg from 'pg';
import { required } from '../required.ts';
import { auditAppendSql, auditColumns, type AuditInput } from '../audit/append.ts';
import type { Queryable } from '../db/pool.ts';
import { GatewayError } from '../errors.ts';
import { packCompactJwe } from '../jose/packed-jwe.ts';
import { DELIVER_TASK, jobSpecsSql, SAFETY_NET_ATTEMPTS } from '../queue/jobs.ts';
import type { ProtocolVersion } from '../protocol/v2-acceptance.ts';
import { IDEMPOTENCY_KEY, messageRepeat, replayMismatch, type FirstSubmission } from './idempotency.ts';

export interface SealedDelivery {
  id: string;
  partnerId: string;
  kid: string;
  envelope: string;
  envelopeDigest: string;
  /** The protocol version it was sealed in: what the partner's receipts for it must match. */
  protocol: ProtocolVersion;
}

/** Everything one accepted submission writes: no plaintext, only sealed envelopes, digests and ids. */
export interface IntakeRecord {
  exchange: {
    id: string;
    clientId: string;
    bundleType: string;
    contentDigest: string;
    contentLength: number;
    idempotencyKey: string | null;
    /** The message's own identity (Bundle.identifier, else MessageHeader.id), for messages that carry one. */
    messageKey?: { key: string; expression: string } | null;
    /** Why it is sent (HL7 PurposeOfUse codes), for the delivery entries written later. */
    purposeOfUse: string[];
    /** A message's MessageHeader.id, which a response to it names. */
    messageHeaderId?: string | null;
    /** Where its state changes are notified (a response-url), if the client gave one. */
    responseUrl?: string | null;
  };
  deliveries: SealedDelivery[];
  audit: AuditInput[];
}

export interface IntakeWritten {
  exchangeId: string;
  /** True when an earlier submission with the same Idempotency-Key won. */
  replayed: boolean;
}

/**
 * Write a batch of accepted submissions in ONE statement (its own
 * transaction): exchanges, deliveries (sealed envelopes only), one job per
 * delivery and the numbered audit entries with their patient index rows, as
 * data-modifying CTEs. One
 * round trip instead of seven (BEGIN, four inserts, the audit_head update,
 * COMMIT) shortens the commit every waiting request depends on. A
 * submission whose Idempotency-Key already exists writes nothing (not even
 * audit entries) and resolves to the first exchange, or to an error if its
 * content differs.
 */
export async function writeIntakes(
  db: Queryable,
  records: IntakeRecord[],
  now = new Date(),
): Promise<Array<IntakeWritten | Error>> {
  const ex = records.map((r) => r.exchange);
  const deliveries = records.flatMap((r) => r.deliveries.map((d) => ({ ...d, exchangeId: r.exchange.id })));
  const audit = records.flatMap((r) => r.audit.map((a) => ({ exchangeId: r.exchange.id, a })));
  const cols = auditColumns(
    audit.map((x) => x.a),
    now,
  );
  const { rows } = await db.query<{ inserted: string[] | null }>({
    // Named, so each connection plans it once: a batch of one pays the write, not the planning.
    name: 'intake-write',
    text: `WITH ex AS (
       INSERT INTO exchanges (id, client_id, bundle_type, content_digest, content_length, idempotency_key, message_key, purpose_of_use, message_header_id, response_url)
       -- One text per exchange for its codes (letters only, so commas join them): unnest cannot carry arrays of arrays.
       SELECT u.id, u.client_id, u.bundle_type, u.digest, u.length, u.idem, u.msg, string_to_array(u.purpose, ','), u.header_id, u.response_url
         FROM unnest($5::uuid[], $6::text[], $7::text[], $8::text[], $9::int[], $10::text[], $24::text[], $25::text[], $28::text[], $29::text[])
           AS u(id, client_id, bundle_type, digest, length, idem, msg, purpose, header_id, response_url)
       -- Either key already used by this client (exchanges_idempotency, exchanges_message_key): a repeat.
       ON CONFLICT DO NOTHING
       RETURNING id
     ), dl AS (
       INSERT INTO deliveries (id, exchange_id, partner_id, recipient_kid, envelope_digest, protocol)
       SELECT d.* FROM unnest($11::uuid[], $12::uuid[], $13::text[], $14::text[], $16::text[], $30::smallint[]) AS d(id, exchange_id, partner_id, kid, digest, protocol)
        WHERE d.exchange_id IN (SELECT id FROM ex)
       RETURNING id
     ), sealed AS (
       -- The envelopes in their own table (migration 280), so a purge leaves only envelope chunks to free.
       INSERT INTO delivery_envelopes (delivery_id, envelope)
       SELECT s.* FROM unnest($11::uuid[], $15::bytea[]) AS s(id, envelope) WHERE s.id IN (SELECT id FROM dl)
     ), jobs AS (
       SELECT count(*) AS n FROM graphile_worker.add_jobs(${jobSpecsSql(DELIVER_TASK, '(SELECT id FROM dl)')})
     ), entries AS (
       SELECT u.* FROM unnest($17::uuid[], $18::text[], $19::text[], $20::bytea[], $21::bytea[], $22::text[], $23::text[]) WITH ORDINALITY AS u(exchange_id, b, a, bb, ab, t, o, ord)
        WHERE u.exchange_id IN (SELECT id FROM ex)
     ), patients AS (
       SELECT * FROM unnest($26::bigint[], $27::bytea[]) AS p(ord, blind)
     ), ${auditAppendSql('entries', '$4::timestamptz', 'patients')}
     SELECT (SELECT array_agg(id) FROM ex)::text[] AS inserted, (SELECT n FROM jobs) AS jobs, (SELECT count(*) FROM logged) AS logged`,
    values: [
      DELIVER_TASK,
      SAFETY_NET_ATTEMPTS,
      null,
      now,
      ex.map((e) => e.id),
      ex.map((e) => e.clientId),
      ex.map((e) => e.bundleType),
      ex.map((e) => e.contentDigest),
      ex.map((e) => e.contentLength),
      ex.map((e) => e.idempotencyKey),
      deliveries.map((d) => d.id),
      deliveries.map((d) => d.exchangeId),
      deliveries.map((d) => d.partnerId),
      deliveries.map((d) => d.kid),
      deliveries.map((d) => packCompactJwe(d.envelope)),
      deliveries.map((d) => d.envelopeDigest),
      audit.map((x) => x.exchangeId),
      cols.before,
      cols.after,
      cols.beforeBytes,
      cols.afterBytes,
      cols.types,
      cols.outcomes,
      ex.map((e) => e.messageKey?.key ?? null),
      ex.map((e) => e.purposeOfUse.join(',')),
      cols.patientOrds,
      cols.patientBlinds,
      ex.map((e) => e.messageHeaderId ?? null),
      ex.map((e) => e.responseUrl ?? null),
      deliveries.map((d) => d.protocol),
    ],
  });
  const inserted = new Set(required(rows[0], 'the one row of the intake statement').inserted ?? []);
  const losers = records.filter((r) => !inserted.has(r.exchange.id));
  const firsts = new Map<string, { id: string; content_digest: string; purpose_of_use: string[] | null }>();
  const byKey = (clientId: string, kind: 'i' | 'm', key: string) => `${clientId}\n${kind}\n${key}`;
  if (losers.length) {
    const { rows: found } = await db.query<{
      id: string;
      client_id: string;
      idempotency_key: string | null;
      message_key: string | null;
      content_digest: string;
      purpose_of_use: string[] | null;
    }>(
      `SELECT e.id, e.client_id, e.idempotency_key, e.message_key, e.content_digest, e.purpose_of_use
         FROM exchanges e JOIN unnest($1::text[], $2::text[], $3::text[]) AS l(client_id, idempotency_key, message_key)
           ON e.client_id = l.client_id AND (e.idempotency_key = l.idempotency_key OR e.message_key = l.message_key)`,
      [
        losers.map((r) => r.exchange.clientId),
        losers.map((r) => r.exchange.idempotencyKey),
        losers.map((r) => r.exchange.messageKey?.key ?? null),
      ],
    );
    for (const f of found) {
      if (f.idempotency_key !== null) firsts.set(byKey(f.client_id, 'i', f.idempotency_key), f);
      if (f.message_key !== null) firsts.set(byKey(f.client_id, 'm', f.message_key), f);
    }
  }
  return Promise.all(
    records.map(async (r) => {
      if (inserted.has(r.exchange.id)) return { exchangeId: r.exchange.id, replayed: false };
      const { clientId, idempotencyKey, messageKey } = r.exchange;
      const byIdempotency = idempotencyKey === null ? undefined : firsts.get(byKey(clientId, 'i', idempotencyKey));
      const byMessage = messageKey ? firsts.get(byKey(clientId, 'm', messageKey.key)) : undefined;
      const first = byIdempotency ?? byMessage;
      if (!first)
        return new GatewayError('CONFLICT', 'a submission with this Idempotency-Key or message is in progress; retry', {
          retryAfter: 1,
        });
      const mismatch = await replayMismatch(
        db,
        'deliveries',
        { id: first.id, contentDigest: first.content_digest, purposeOfUse: first.purpose_of_use },
        {
          contentDigest: r.exchange.contentDigest,
          partnerIds: r.deliveries.map((d) => d.partnerId),
          purposeOfUse: r.exchange.purposeOfUse,
        },
        byIdempotency || !messageKey ? IDEMPOTENCY_KEY : messageRepeat(messageKey),
      );
      return mismatch ?? { exchangeId: first.id, replayed: true };
    }),
  );
}

/** The first exchange submitted with this key (the Idempotency-Key, or a message identity) by this client, if any. */
export async function findByIdempotencyKey(
  db: Pick<pg.Pool, 'query'>,
  clientId: string,
  key: string,
  column: 'idempotency_key' | 'message_key' = 'idempotency_key',
): Promise<FirstSubmission | undefined> {
  const { rows } = await db.query<{ id: string; content_digest: string; purpose_of_use: string[] | null }>(
    `SELECT id, content_digest, purpose_of_use FROM exchanges WHERE client_id = $1 AND ${column} = $2`,
    [clientId, key],
  );
  const r = rows[0];
  return r ? { id: r.id, contentDigest: r.content_digest, purposeOfUse: r.purpose_of_use } : undefined;
}
