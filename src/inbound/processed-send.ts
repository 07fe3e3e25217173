import type pg from 'pg';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import { inTransaction } from '../db/pool.ts';
import { holdsDeliveries } from '../directory/store.ts';
import type { GatewayContext } from '../gateway-context.ts';
import { postOnce, type PostOutcome } from '../net/post-once.ts';
import { signProcessedReceipt } from '../protocol/processed-receipt.ts';
import { PROTOCOL, type ProcessedVia } from '../protocol/wire.ts';
import { enqueueJobs, PROCESSED_RECEIPT_TASK } from '../queue/jobs.ts';
import { notDue, settleAttempt, type RetriedSend } from '../queue/retrying-send.ts';
import { required } from '../required.ts';

export type ProcessedSendContext = Pick<
  GatewayContext,
  'config' | 'pool' | 'keyring' | 'directory' | 'fetch' | 'logger'
>;

interface Row {
  id: string;
  message_id: string;
  partner_id: string;
  via: ProcessedVia;
  processed_at: Date;
  receipt: string | null;
  state: 'pending' | 'sent' | 'failed';
  attempts: number;
  round_started_at: Date;
  next_attempt_at: Date | null;
  jti: string;
  exchange_id: string;
  envelope_digest: string;
  receipt_id: string;
  /** The message came as protocol v2: its processed receipt is dual-signed too. */
  v2: boolean;
}

/** Where a partner takes processed receipts: its inbox URL (from the directory) plus /processed. */
export const processedEndpointOf = (partner: { endpoint: string }) =>
  partner.endpoint.replace(/\/+$/, '') + PROTOCOL.processedSuffix;

type Outcome = PostOutcome;

const PROCESSED_SEND: RetriedSend = { table: 'processed_receipts', task: PROCESSED_RECEIPT_TASK };

/**
 * Send one processed receipt: signed on the first attempt and stored, so
 * every retry sends the same bytes; then POSTed to the partner and the
 * attempt recorded with the delivery retry rule (src/net/retry-policy.ts).
 * A suspended partner is sent nothing: the job looks again later, with no
 * attempt spent.
 */
export async function sendProcessedReceipt(
  ctx: ProcessedSendContext,
  receiptId: string,
): Promise<'sent' | 'retry' | 'failed' | 'held' | 'skipped'> {
  const row = await load(ctx.pool, receiptId);
  if (!row || notDue(row)) return 'skipped';
  const partner = await ctx.directory.get(row.partner_id);
  if (partner && holdsDeliveries(partner)) {
    await enqueueJobs(ctx.pool, PROCESSED_RECEIPT_TASK, [row.id], {
      runAt: new Date(Date.now() + ctx.config.deliveryRetryMax),
    });
    return 'held';
  }
  const started = new Date();
  const outcome: Outcome = partner
    ? await post(ctx, processedEndpointOf(partner), row.id, await signedOnce(ctx, row))
    : { cls: 'permanent', status: null, error: 'partner removed from the directory' };
  return inTransaction(ctx.pool, (db) => record(ctx, db, row.id, outcome, started));
}

async function load(db: Pick<pg.Pool, 'query'>, id: string): Promise<Row | undefined> {
  const { rows } = await db.query<Row>(
    `SELECT p.*, m.jti, m.exchange_id, m.envelope_digest, m.receipt_id, m.sender_pq_key IS NOT NULL AS v2
       FROM processed_receipts p JOIN inbox_messages m ON m.id = p.message_id WHERE p.id = $1`,
    [id],
  );
  return rows[0];
}

/** The stored receipt, or a new one signed now and stored unless another run stored one first. */
async function signedOnce(ctx: ProcessedSendContext, row: Row): Promise<string> {
  if (row.receipt) return row.receipt;
  const keyring = await ctx.keyring.fresh();
  const receipt = await signProcessedReceipt(
    keyring.signer(),
    {
      iss: ctx.config.org,
      aud: row.partner_id,
      iat: Math.floor(Date.now() / 1000),
      jti: row.id,
      exchange: row.exchange_id,
      delivery: row.jti,
      digest: row.envelope_digest,
      receipt: row.receipt_id,
      processed_at: Math.floor(row.processed_at.getTime() / 1000),
      via: row.via,
    },
    row.v2 ? await keyring.pqSigner() : undefined,
  );
  const { rows } = await ctx.pool.query<{ receipt: string }>(
    `UPDATE processed_receipts SET receipt = coalesce(receipt, $2), updated_at = now() WHERE id = $1 RETURNING receipt`,
    [row.id, receipt],
  );
  return required(rows[0], 'the processed receipt row just read').receipt;
}

function post(ctx: ProcessedSendContext, url: string, id: string, receipt: string): Promise<Outcome> {
  return postOnce(ctx.fetch, url, {
    contentType: PROTOCOL.mediaType,
    idempotencyKey: id,
    body: receipt,
    timeoutMs: ctx.config.deliveryTimeout,
  });
}

/** The attempt, the new state and its audit entries (and the next job) on one transaction, under the row lock. */
async function record(
  ctx: ProcessedSendContext,
  db: pg.PoolClient,
  id: string,
  o: Outcome,
  started: Date,
): Promise<'sent' | 'retry' | 'failed' | 'skipped'> {
  const { rows } = await db.query<Row>(
    `SELECT p.*, m.jti, m.exchange_id, m.envelope_digest, m.receipt_id, m.sender_pq_key IS NOT NULL AS v2
       FROM processed_receipts p JOIN inbox_messages m ON m.id = p.message_id WHERE p.id = $1 FOR UPDATE OF p`,
    [id],
  );
  const row = required(rows[0], 'the processed receipt the attempt was made for');
  if (row.state !== 'pending') return 'skipped';
  const attempt = row.attempts + 1;
  const partner = { type: 'partner' as const, id: row.partner_id };
  const entity = [
    { type: 'processed-receipt', id },
    { type: 'inbox-message', id: row.message_id },
    { type: 'delivery', id: row.jti },
  ];
  const audit: AuditInput[] = [
    {
      type: 'processed-receipt.attempt',
      outcome: o.cls === 'ok' ? 'success' : 'minor-failure',
      agent: partner,
      entity,
      detail: { attempt, status: o.status, error: o.error, ms: Date.now() - started.getTime() },
    },
  ];
  const settled = await settleAttempt(db, PROCESSED_SEND, id, row, o, ctx.config);
  const result = settled.result;
  if (settled.result === 'failed')
    audit.push({
      type: 'processed-receipt.failed',
      outcome: 'serious-failure',
      agent: partner,
      entity,
      detail: { attempts: attempt, reason: settled.reason, status: o.status },
    });
  await appendAudit(db, audit);
  ctx.logger.info(
    { processedReceipt: id, partner: row.partner_id, attempt, result, status: o.status },
    'processed receipt attempt',
  );
  return result;
}
