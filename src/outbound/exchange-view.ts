import type pg from 'pg';
import { isUuid } from '../ids.ts';
import { exchangeEvents, type ExchangeEventKind } from './exchange-events.ts';

export interface DeliveryView {
  delivery: string;
  partner: string;
  state: 'pending' | 'delivered' | 'failed';
  recipient_kid: string;
  envelope_digest: string;
  attempts: Array<{
    attempt: number;
    at: string;
    outcome: string;
    http_status: number | null;
    duration_ms: number;
    error: string | null;
  }>;
  next_attempt_at: string | null;
  last_error: string | null;
  delivered_at: string | null;
  receipt: string | null;
  /** When the partner's EHR took it in, by its verified processed receipt (the compact JWS), and how. */
  processed_at: string | null;
  processed_receipt: string | null;
  processed_via: 'acknowledged' | 'forwarded' | null;
  /** Response messages that answer it: each one the inbox message that holds it, with its response code. */
  responses: Array<{ message: string; code: string; received_at: string }>;
  /** What happened to it, in order (exchange_events): delivered, processed, response-received, failed, expired. */
  events: Array<{ kind: ExchangeEventKind; at: string }>;
  /** When retention purged the sealed envelope; its digest and the receipt remain. */
  purged_at: string | null;
}

export interface ExchangeView {
  id: string;
  created: string;
  bundle_type: string;
  content_digest: string;
  content_length: number;
  /** An imaging exchange (a DICOM study, no Bundle): how many instances it sent. */
  imaging?: { instances: number };
  recipients: DeliveryView[];
}

/** Where each kind of exchange keeps its rows: the columns the view reads are shared, names aside. */
const SOURCES = {
  bundle: {
    exchange:
      'SELECT id, client_id, created_at, bundle_type, content_digest, content_length FROM exchanges WHERE id = $1',
    deliveries: 'deliveries',
    digest: 'envelope_digest',
    attempts: 'delivery_attempts',
  },
  imaging: {
    exchange: `SELECT id, client_id, created_at, 'imaging' AS bundle_type, content_digest, content_length, instances
                 FROM imaging_exchanges WHERE id = $1`,
    deliveries: 'imaging_deliveries',
    digest: 'manifest_digest',
    attempts: 'imaging_delivery_attempts',
  },
} as const;

const iso = (d: Date | null) => (d ? d.toISOString() : null);

/**
 * An exchange with per-recipient state, attempts and receipt; undefined if
 * absent or another client's. A bundle exchange by default; `imaging` reads
 * an imaging exchange into the same view (its deliveries' digest is the
 * manifest's).
 */
export async function readExchange(
  db: Pick<pg.Pool, 'query'>,
  id: string,
  clientId: string | null,
  kind: keyof typeof SOURCES = 'bundle',
): Promise<ExchangeView | undefined> {
  if (!isUuid(id)) return undefined;
  const source = SOURCES[kind];
  const { rows } = await db.query<{
    id: string;
    client_id: string;
    created_at: Date;
    bundle_type: string;
    content_digest: string;
    content_length: number | string;
    instances?: number;
  }>(source.exchange, [id]);
  const ex = rows[0];
  if (!ex || (clientId !== null && ex.client_id !== clientId)) return undefined;
  const { rows: dels } = await db.query<{
    id: string;
    partner_id: string;
    state: DeliveryView['state'];
    recipient_kid: string;
    envelope_digest: string;
    next_attempt_at: Date | null;
    last_error: string | null;
    delivered_at: Date | null;
    receipt: string | null;
    processed_at: Date | null;
    processed_receipt: string | null;
    processed_via: DeliveryView['processed_via'];
    purged_at: Date | null;
  }>(
    `SELECT id, partner_id, state, recipient_kid, ${source.digest} AS envelope_digest, next_attempt_at, last_error, delivered_at, receipt,
            processed_at, processed_receipt, processed_via, purged_at
       FROM ${source.deliveries} WHERE exchange_id = $1 ORDER BY partner_id`,
    [id],
  );
  const events = await exchangeEvents(db, id);
  const { rows: atts } = await db.query<{
    delivery_id: string;
    attempt: number;
    started_at: Date;
    outcome: string;
    http_status: number | null;
    duration_ms: number;
    error: string | null;
  }>(
    `SELECT a.delivery_id, a.attempt, a.started_at, a.outcome, a.http_status, a.duration_ms, a.error
       FROM ${source.attempts} a JOIN ${source.deliveries} d ON d.id = a.delivery_id WHERE d.exchange_id = $1 ORDER BY a.id`,
    [id],
  );
  return {
    id: ex.id,
    created: ex.created_at.toISOString(),
    bundle_type: ex.bundle_type,
    content_digest: ex.content_digest,
    content_length: Number(ex.content_length),
    ...(ex.instances !== undefined ? { imaging: { instances: ex.instances } } : {}),
    recipients: dels.map((d) => ({
      delivery: d.id,
      partner: d.partner_id,
      state: d.state,
      recipient_kid: d.recipient_kid,
      envelope_digest: d.envelope_digest,
      attempts: atts
        .filter((a) => a.delivery_id === d.id)
        .map((a) => ({
          attempt: a.attempt,
          at: a.started_at.toISOString(),
          outcome: a.outcome,
          http_status: a.http_status,
          duration_ms: a.duration_ms,
          error: a.error,
        })),
      next_attempt_at: iso(d.next_attempt_at),
      last_error: d.last_error,
      delivered_at: iso(d.delivered_at),
      receipt: d.receipt,
      processed_at: iso(d.processed_at),
      processed_receipt: d.processed_receipt,
      processed_via: d.processed_via,
      responses: events
        .filter((e) => e.deliveryId === d.id && e.kind === 'response-received')
        .map((e) => ({
          message: String(e.detail.message),
          code: String(e.detail.code),
          received_at: e.at.toISOString(),
        })),
      events: events.filter((e) => e.deliveryId === d.id).map((e) => ({ kind: e.kind, at: e.at.toISOString() })),
      purged_at: iso(d.purged_at),
    })),
  };
}
