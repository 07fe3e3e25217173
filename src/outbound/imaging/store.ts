import type pg from 'pg';
import { appendAudit, type AuditInput } from '../../audit/append.ts';
import { inTransaction, type Queryable } from '../../db/pool.ts';
import { GatewayError } from '../../errors.ts';
import { DELIVER_IMAGING_TASK, enqueueJobs } from '../../queue/jobs.ts';
import { replayMismatch } from '../idempotency.ts';
import { exchangeEvents } from '../exchange-events.ts';
import type { ProtocolVersion } from '../../protocol/v2-acceptance.ts';

export interface ImagingDeliveryRecord {
  id: string;
  partnerId: string;
  kid: string;
  announcement: string;
  manifestEnvelope: string;
  manifestDigest: string;
  /** The protocol version it was sealed in: what the partner's receipts for it must match. */
  protocol: ProtocolVersion;
  contentPath: string;
  contentJweLength: number;
}

export interface ImagingIntakeRecord {
  exchange: {
    id: string;
    clientId: string;
    contentType: string;
    instances: number;
    contentLength: number;
    contentDigest: string;
    idempotencyKey: string | null;
    purposeOfUse: string[];
    /** Where its state changes are notified (a checked response-url), if the client gave one. */
    responseUrl: string | null;
  };
  deliveries: ImagingDeliveryRecord[];
  audit: AuditInput[];
}

/**
 * One transaction: the exchange, a delivery per recipient (paths and sealed
 * manifest only), a job per delivery and the audit entries. A repeated
 * Idempotency-Key writes nothing and resolves to the first exchange, or is
 * refused if the content differs.
 */
export async function writeImagingIntake(
  pool: pg.Pool,
  r: ImagingIntakeRecord,
  runAt: Date | null = null,
): Promise<{ exchangeId: string; replayed: boolean }> {
  return inTransaction(pool, async (db) => {
    const e = r.exchange;
    const { rowCount } = await db.query(
      `INSERT INTO imaging_exchanges (id, client_id, content_type, instances, content_length, content_digest, idempotency_key, purpose_of_use, response_url)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (client_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING`,
      [
        e.id,
        e.clientId,
        e.contentType,
        e.instances,
        e.contentLength,
        e.contentDigest,
        e.idempotencyKey,
        e.purposeOfUse,
        e.responseUrl,
      ],
    );
    if (rowCount === 0) {
      const { rows } = await db.query<{ id: string; content_digest: string; purpose_of_use: string[] | null }>(
        'SELECT id, content_digest, purpose_of_use FROM imaging_exchanges WHERE client_id = $1 AND idempotency_key = $2',
        [e.clientId, e.idempotencyKey],
      );
      const first = rows[0];
      if (!first)
        throw new GatewayError('CONFLICT', 'a submission with this Idempotency-Key is in progress; retry', {
          retryAfter: 1,
        });
      const mismatch = await replayMismatch(
        db,
        'imaging_deliveries',
        { id: first.id, contentDigest: first.content_digest, purposeOfUse: first.purpose_of_use },
        {
          contentDigest: e.contentDigest,
          partnerIds: r.deliveries.map((d) => d.partnerId),
          purposeOfUse: e.purposeOfUse,
        },
      );
      if (mismatch) throw mismatch;
      return { exchangeId: first.id, replayed: true };
    }
    for (const d of r.deliveries) {
      await db.query(
        `INSERT INTO imaging_deliveries (id, exchange_id, partner_id, recipient_kid, announcement, manifest_envelope, manifest_digest, content_path, content_jwe_length, protocol)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [
          d.id,
          e.id,
          d.partnerId,
          d.kid,
          d.announcement,
          d.manifestEnvelope,
          d.manifestDigest,
          d.contentPath,
          d.contentJweLength,
          d.protocol,
        ],
      );
    }
    await enqueueJobs(
      db,
      DELIVER_IMAGING_TASK,
      r.deliveries.map((d) => d.id),
      { runAt },
    );
    await appendAudit(db, r.audit);
    return { exchangeId: e.id, replayed: false };
  });
}

export interface ImagingDeliveryRow {
  id: string;
  exchange_id: string;
  partner_id: string;
  announcement: string;
  manifest_envelope: string;
  /** The protocol version it was sealed in (written at intake). */
  protocol: ProtocolVersion;
  manifest_digest: string;
  content_path: string;
  content_jwe_length: string; // bigint
  /** With withDigest: "sha-256=" + base64url of the content plaintext (the receipt's content_digest). */
  content_digest?: string;
  state: 'pending' | 'delivered' | 'failed';
  attempts: number;
  round_attempts: number;
  round_started_at: Date;
  next_attempt_at: Date | null;
  /** Only on the row the attempt ledger reads (joined from the exchange). */
  purpose_of_use: string[] | null;
}

export async function getImagingDelivery(
  db: Queryable,
  id: string,
  lock = false,
  withDigest = false,
): Promise<ImagingDeliveryRow | undefined> {
  const { rows } = await db.query<ImagingDeliveryRow>(
    withDigest
      ? 'SELECT d.*, x.content_digest FROM imaging_deliveries d JOIN imaging_exchanges x ON x.id = d.exchange_id WHERE d.id = $1'
      : `SELECT * FROM imaging_deliveries WHERE id = $1${lock ? ' FOR UPDATE' : ''}`,
    [id],
  );
  return rows[0];
}

/** The sender's view of one imaging exchange: per recipient state, attempts, receipt, processed receipt and events. */
export async function readImagingExchange(
  db: Queryable,
  id: string,
  clientId: string | null,
): Promise<Record<string, unknown> | undefined> {
  if (!/^[0-9a-f-]{36}$/i.test(id)) return undefined;
  const { rows } = await db.query(
    'SELECT * FROM imaging_exchanges WHERE id = $1 AND ($2::text IS NULL OR client_id = $2)',
    [id, clientId],
  );
  const e = rows[0];
  if (!e) return undefined;
  const { rows: ds } = await db.query(
    `SELECT d.id, d.partner_id, d.state, d.attempts, d.last_error, d.manifest_digest, x.content_digest, d.receipt, d.delivered_at, d.purged_at,
            d.processed_at, d.processed_receipt, d.processed_via,
            COALESCE((SELECT json_agg(json_build_object('attempt', a.attempt, 'at', a.started_at, 'outcome', a.outcome, 'http_status', a.http_status, 'error', a.error) ORDER BY a.attempt)
                        FROM imaging_delivery_attempts a WHERE a.delivery_id = d.id), '[]') AS attempts_log
       FROM imaging_deliveries d JOIN imaging_exchanges x ON x.id = d.exchange_id WHERE d.exchange_id = $1 ORDER BY d.partner_id`,
    [id],
  );
  const events = await exchangeEvents(db, id);
  return {
    id: e.id,
    contentType: e.content_type,
    instances: e.instances,
    length: Number(e.content_length),
    digest: e.content_digest,
    createdAt: e.created_at,
    recipients: ds.map((d) => ({
      partner: d.partner_id,
      delivery: d.id,
      state: d.state,
      last_error: d.last_error,
      manifest_digest: d.manifest_digest,
      content_digest: d.content_digest,
      receipt: d.receipt,
      delivered_at: d.delivered_at,
      processed_at: d.processed_at,
      processed_receipt: d.processed_receipt,
      processed_via: d.processed_via,
      events: events.filter((x) => x.deliveryId === d.id).map((x) => ({ kind: x.kind, at: x.at.toISOString() })),
      purged_at: d.purged_at,
      attempts: d.attempts_log,
    })),
  };
}
