import type pg from 'pg';
import { appendAudit } from '../audit/append.ts';
import { GatewayError } from '../errors.ts';
import type { GatewayContext } from '../gateway-context.ts';
import { gatewayDecryptionKeys } from './decryption-keys.ts';
import { openStoredMessage } from './inbox-read.ts';
import { getInboxMessage, markForwarded, recordForwardFailure, type InboxMessage } from './inbox-store.ts';
import { PROTOCOL } from '../protocol/wire.ts';
import { classifyStatus } from '../net/retry-policy.ts';
import { readBounded } from '../net/read-bounded.ts';
import { messageResponse } from '../fhir/message-header.ts';
import { queueProcessedReceipt } from './processed-notice.ts';
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

/**
 * What becomes of the local EHR's answer to a forwarded message (its JSON
 * text), given by the worker, which may hand a response message to the
 * outbound pipeline. It refuses (and audits) a bad answer itself; a throw
 * means it could not decide now, and the forward is tried again.
 */
export type ForwardAnswerHandler = (answer: string, forwarded: InboxMessage) => Promise<void>;

/** Whether an answer of the EHR's $process-message may be a response message to route back. */
function mayAnswerWithResponse(res: Response, bundle: Record<string, unknown>): boolean {
  // A response is not answered: an EHR that responded to one would start an exchange with no end.
  if (bundle.type !== 'message' || messageResponse(bundle)) return false;
  return /^application\/(fhir\+)?json\s*(;|$)/i.test(res.headers.get('content-type') ?? '') && res.status !== 204;
}

/** The answer's text, at most BODY_LIMIT bytes (a larger one is not routed back: the forward itself succeeded). */
async function readAnswer(ctx: ForwardContext, res: Response, messageId: string): Promise<string | undefined> {
  try {
    return await readBounded(res, ctx.config.bodyLimit, "the EHR's answer");
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err;
    ctx.logger.warn(
      { messageId, reason: err.code },
      "the EHR's answer to a forwarded message is too large to route back",
    );
    return undefined;
  }
}

export async function forward(
  ctx: ForwardContext,
  messageId: string,
  attempt = 1,
  onAnswer?: ForwardAnswerHandler,
): Promise<'forwarded' | 'refused' | 'skipped'> {
  const base = ctx.config.localFhirBaseUrl;
  const row = await getInboxMessage(ctx.pool, messageId);
  if (!base || !row) return 'skipped';
  if (row.forwardedAt) return 'forwarded';
  // Acknowledged by a pull and then purged by retention before this forward ran: nothing is left to hand over.
  if (row.purgedAt) return 'skipped';
  await ctx.keyring.fresh();
  const bundle = await openStoredMessage(ctx, row, gatewayDecryptionKeys(ctx.keyring));
  const parsed = JSON.parse(bundle) as Record<string, unknown>;
  const type = parsed.type;
  const url = forwardUrl(base, type);
  let status: number | null = null;
  let error: string;
  let answer: string | undefined;
  try {
    const res = await ctx.fetch(url, {
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
    status = res.status;
    const cls = classifyStatus(res.status);
    if (cls === 'ok' && onAnswer && mayAnswerWithResponse(res, parsed)) answer = await readAnswer(ctx, res, row.id);
    else await res.body?.cancel().catch(() => undefined);
    if (cls === 'ok') {
      // The answer is routed back (or refused) before the forward is recorded: a crash between them forwards again.
      if (answer && onAnswer) await onAnswer(answer, row);
      const now = new Date();
      await audited(ctx, url, row.id, row.envelopeDigest, true, { status, attempt }, async (db) => {
        await markForwarded(db, row.id, now);
        await queueProcessedReceipt(db, row, 'forwarded', now, { type: 'gateway', id: ctx.config.org });
      });
      return 'forwarded';
    }
    error = `HTTP ${res.status}`;
    if (cls === 'permanent') {
      await audited(ctx, url, row.id, row.envelopeDigest, false, { status, attempt, permanent: true }, (db) =>
        recordForwardFailure(db, row.id, error),
      );
      return 'refused';
    }
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    error =
      e instanceof GatewayError
        ? `answer ${e.code}`
        : e.name === 'TimeoutError'
          ? 'timeout'
          : `network ${e.cause?.code ?? e.name}`;
  }
  await audited(ctx, url, row.id, row.envelopeDigest, false, { status, attempt, permanent: false }, (db) =>
    recordForwardFailure(db, row.id, error),
  );
  throw new TransientForwardError(`forward of ${row.id} failed (${error}); will retry`);
}

async function audited(
  ctx: ForwardContext,
  url: string,
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
        // The counterpart is the local EHR's FHIR endpoint, which this gateway calls.
        agent: { type: 'endpoint', id: url, network: url },
        entity: [{ type: 'inbox-message', id, digest }],
        detail,
      },
    ]);
  });
}
