import type pg from 'pg';
import { appendAudit } from '../audit/append.ts';
import type { GatewayContext } from '../gateway-context.ts';
import { gatewayDecryptionKeys } from './decryption-keys.ts';
import { openStoredMessage } from './inbox-read.ts';
import { getInboxMessage, markForwarded, recordForwardFailure } from './inbox-store.ts';
import { PROTOCOL } from '../protocol/wire.ts';
import { classifyStatus } from '../net/retry-policy.ts';
import { enqueueJobs, FORWARD_TASK } from '../queue/jobs.ts';
import { inTransaction } from '../db/pool.ts';

/**
 * Optional push hand-over: when LOCAL_FHIR_BASE_URL is set, every accepted
 * message is forwarded to the local EHR's FHIR server by a queued job
 * (payload: the message id only). Transient failures (408, 429, 5xx,
 * network, timeout) throw, so graphile-worker retries with backoff up to
 * DELIVERY_MAX_ATTEMPTS; other 4xx are recorded and not retried.
 */
export type ForwardContext = Pick<GatewayContext, 'config' | 'pool' | 'hsm' | 'keyring' | 'logger' | 'fetch'>;

/** Queue one forward job per message, on the caller's transaction (job key = message id). */
export async function enqueueForwards(
  db: Pick<pg.PoolClient, 'query'>,
  messageIds: string[],
  maxAttempts: number,
): Promise<void> {
  await enqueueJobs(db, FORWARD_TASK, messageIds, { maxAttempts });
}

/** Where a Bundle goes on a FHIR server: transactions and batches to the base, messages to $process-message, others stored as Bundle. */
export function forwardUrl(base: string, bundleType: unknown): string {
  if (bundleType === 'transaction' || bundleType === 'batch') return base;
  if (bundleType === 'message') return `${base}/$process-message`;
  return `${base}/Bundle`;
}

export class TransientForwardError extends Error {}

export async function forward(
  ctx: ForwardContext,
  messageId: string,
  attempt = 1,
): Promise<'forwarded' | 'refused' | 'skipped'> {
  const base = ctx.config.localFhirBaseUrl;
  const row = await getInboxMessage(ctx.pool, messageId);
  if (!base || !row) return 'skipped';
  if (row.forwardedAt) return 'forwarded';
  // Acknowledged by a pull and then purged by retention before this forward ran: nothing is left to hand over.
  if (row.purgedAt) return 'skipped';
  await ctx.keyring.fresh();
  const bundle = await openStoredMessage(ctx, row, gatewayDecryptionKeys(ctx.keyring));
  const type = (JSON.parse(bundle) as { type?: unknown }).type;
  let status: number | null = null;
  let error: string;
  try {
    const res = await ctx.fetch(forwardUrl(base, type), {
      method: 'POST',
      headers: {
        'content-type': PROTOCOL.fhirContentType,
        accept: PROTOCOL.fhirContentType,
        'x-exchange-sender': row.sender,
        'x-exchange-delivery': row.jti,
      },
      body: bundle,
      redirect: 'manual',
      signal: AbortSignal.timeout(ctx.config.deliveryTimeout),
    });
    await res.body?.cancel().catch(() => undefined);
    status = res.status;
    const cls = classifyStatus(res.status);
    if (cls === 'ok') {
      await audited(ctx, row.id, row.envelopeDigest, true, { status, attempt }, (db) =>
        markForwarded(db, row.id, new Date()),
      );
      return 'forwarded';
    }
    error = `HTTP ${res.status}`;
    if (cls === 'permanent') {
      await audited(ctx, row.id, row.envelopeDigest, false, { status, attempt, permanent: true }, (db) =>
        recordForwardFailure(db, row.id, error),
      );
      return 'refused';
    }
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    error = e.name === 'TimeoutError' ? 'timeout' : `network ${e.cause?.code ?? e.name}`;
  }
  await audited(ctx, row.id, row.envelopeDigest, false, { status, attempt, permanent: false }, (db) =>
    recordForwardFailure(db, row.id, error),
  );
  throw new TransientForwardError(`forward of ${row.id} failed (${error}); will retry`);
}

async function audited(
  ctx: ForwardContext,
  id: string,
  digest: string,
  ok: boolean,
  detail: Record<string, string | number | boolean | null>,
  change: (db: pg.PoolClient) => Promise<void>,
): Promise<void> {
  await inTransaction(ctx.pool, async (client) => {
    await change(client);
    await appendAudit(client, [
      {
        type: ok ? 'inbox.forwarded' : 'inbox.forward-failed',
        outcome: ok ? 'success' : 'minor-failure',
        agent: { type: 'gateway', id: ctx.config.org },
        entity: [{ type: 'inbox-message', id, digest }],
        detail,
      },
    ]);
  });
}
