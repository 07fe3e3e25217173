import type pg from 'pg';
import { required } from '../required.ts';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import type { GatewayContext } from '../gateway-context.ts';
import { giveUpReason, nextAttempt, type AttemptClass } from '../net/retry-policy.ts';
import { recordExchangeEvent } from './exchange-events.ts';

/** The outcome of one transmission, as classified by the sender. */
export interface AttemptResult {
  cls: AttemptClass;
  status: number | null;
  /** A short code, never content: "HTTP 503", "timeout", "network ECONNREFUSED", "receipt digest"... */
  error: string | null;
  retryAfterMs?: number;
  receipt?: { jws: string; jti: string };
  /** Where it was sent (the partner's inbox URL), unless nothing was sent. */
  url?: string;
}

/** Where a kind of delivery keeps its state and attempts (bundles and imaging share the columns). */
export interface AttemptLedger {
  table: 'deliveries' | 'imaging_deliveries';
  attemptsTable: 'delivery_attempts' | 'imaging_delivery_attempts';
  /** The exchanges the deliveries belong to (their purpose of use is audited with each attempt). */
  exchangeTable: 'exchanges' | 'imaging_exchanges';
  exchangeEntity: string;
  /** Extra audit detail that says what kind of content was sent. */
  detail: Record<string, string>;
  enqueue(db: pg.PoolClient, ids: string[], runAt?: Date | null): Promise<void>;
}

interface LedgerRow {
  exchange_id: string;
  partner_id: string;
  state: string;
  attempts: number;
  round_attempts: number;
  round_started_at: Date;
  /** From the exchange: null for exchanges recorded before purposes were. */
  purpose_of_use: string[] | null;
}

/**
 * Record one attempt on the delivery's row, under its row lock, and decide
 * what comes next: delivered (receipt stored), failed (permanent, or the
 * attempt budget or horizon is spent), or another attempt scheduled with
 * backoff. `settle` false records the attempt without deciding (a live
 * cut-through send whose failure the job will retry). Returns the row as it
 * was and the state it is left in.
 */
export async function recordAttempt<R extends LedgerRow>(
  ctx: Pick<GatewayContext, 'config' | 'logger'>,
  db: pg.PoolClient,
  ledger: AttemptLedger,
  id: string,
  r: AttemptResult,
  started: Date,
  settle = true,
): Promise<{ row: R; state: string }> {
  const { rows } = await db.query<R>(
    `SELECT d.*, x.purpose_of_use FROM ${ledger.table} d JOIN ${ledger.exchangeTable} x ON x.id = d.exchange_id
      WHERE d.id = $1 FOR UPDATE OF d`,
    [id],
  );
  const d = required(rows[0], 'the ledger row the attempt was made for');
  const attempt = d.attempts + 1;
  const roundAttempts = d.round_attempts + 1;
  const now = Date.now();
  await db.query(
    `INSERT INTO ${ledger.attemptsTable} (delivery_id, attempt, started_at, duration_ms, outcome, http_status, error) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [id, attempt, started, now - started.getTime(), r.cls, r.status, r.error],
  );
  const entity = [
    { type: 'delivery', id },
    { type: ledger.exchangeEntity, id: d.exchange_id },
  ];
  const partner = { type: 'partner' as const, id: d.partner_id, ...(r.url ? { network: r.url } : {}) };
  const purpose: Pick<AuditInput, 'purposeOfUse'> = d.purpose_of_use?.length ? { purposeOfUse: d.purpose_of_use } : {};
  const audit: AuditInput[] = [
    {
      type: 'delivery.attempt',
      outcome: r.cls === 'delivered' ? 'success' : 'minor-failure',
      agent: partner,
      entity,
      detail: { ...ledger.detail, attempt, result: r.cls, status: r.status, error: r.error },
      ...purpose,
    },
  ];
  let state = d.state;
  if (d.state !== 'pending' || (!settle && r.cls !== 'delivered')) {
    // Already settled by another run (a duplicate job after a crash), or not ours to settle: keep the attempt only.
    await db.query(`UPDATE ${ledger.table} SET attempts = $2, updated_at = now() WHERE id = $1`, [id, attempt]);
  } else if (r.cls === 'delivered') {
    state = 'delivered';
    const receipt = required(r.receipt, 'a receipt on every delivered attempt');
    await db.query(
      `UPDATE ${ledger.table} SET state = 'delivered', attempts = $2, round_attempts = $3, receipt = $4, receipt_jti = $5, delivered_at = now(), next_attempt_at = NULL, last_error = NULL, updated_at = now() WHERE id = $1`,
      [id, attempt, roundAttempts, receipt.jws, receipt.jti],
    );
    await recordExchangeEvent(db, {
      exchangeId: d.exchange_id,
      deliveryId: id,
      kind: 'delivered',
      at: new Date(now),
      detail: { receipt: receipt.jti },
    });
    audit.push({
      type: 'delivery.receipt',
      outcome: 'success',
      agent: partner,
      entity: [...entity, { type: 'receipt', id: receipt.jti }],
      detail: { status: 'accepted' },
      ...purpose,
    });
  } else {
    const next = nextAttempt(roundAttempts, d.round_started_at, ctx.config, r.retryAfterMs, now);
    if (r.cls === 'permanent' || 'exhausted' in next) {
      state = 'failed';
      const why = r.cls === 'permanent' ? r.error : `${r.error}; gave up after ${roundAttempts} attempts`;
      await db.query(
        `UPDATE ${ledger.table} SET state = 'failed', attempts = $2, round_attempts = $3, last_error = $4, next_attempt_at = NULL, updated_at = now() WHERE id = $1`,
        [id, attempt, roundAttempts, why],
      );
      // Out of time is its own event: the sending EHR learns the horizon passed, not that the partner refused.
      const expired = r.cls !== 'permanent' && 'exhausted' in next && next.exhausted === 'horizon';
      await recordExchangeEvent(db, {
        exchangeId: d.exchange_id,
        deliveryId: id,
        kind: expired ? 'expired' : 'failed',
        at: new Date(now),
        detail: { attempts: roundAttempts, status: r.status },
      });
      audit.push({
        type: 'delivery.failed',
        outcome: 'serious-failure',
        agent: partner,
        entity,
        detail: {
          attempts: roundAttempts,
          reason: giveUpReason(r.cls === 'permanent' ? 'permanent' : 'transient', next),
          status: r.status,
        },
        ...purpose,
      });
    } else {
      await db.query(
        `UPDATE ${ledger.table} SET attempts = $2, round_attempts = $3, last_error = $4, next_attempt_at = $5, updated_at = now() WHERE id = $1`,
        [id, attempt, roundAttempts, r.error, next.at],
      );
      await ledger.enqueue(db, [id], next.at);
    }
  }
  const indexes = await appendAudit(db, audit);
  // Where the receipt's entry is, so the accounting of disclosures proves "received" by its inclusion proof.
  const receiptEntry = indexes[audit.findIndex((a) => a.type === 'delivery.receipt')];
  if (receiptEntry !== undefined)
    await db.query(`UPDATE ${ledger.table} SET receipt_audit_idx = $2 WHERE id = $1`, [id, receiptEntry]);
  ctx.logger.info(
    { delivery: id, partner: d.partner_id, attempt, result: r.cls, status: r.status, ...ledger.detail },
    'delivery attempt',
  );
  return { row: d, state };
}
