import type { Task } from 'graphile-worker';
import type { GatewayContext } from '../../gateway-context.ts';
import { isPlainIdentifier } from '../../ids.ts';
import { checkPartnerLog } from '../../evidence/partner-check.ts';
import { partnersToCheck } from '../../evidence/partner-log.ts';

export const PARTNER_EVIDENCE_SWEEP_TASK = 'partner_evidence_sweep';
export const PARTNER_EVIDENCE_TASK = 'partner_evidence';

/** Every minute: one evidence job per partner that may have work (the job decides whether it is due). */
export const PARTNER_EVIDENCE_CRON = `* * * * * ${PARTNER_EVIDENCE_SWEEP_TASK} ?max=1&jobKey=partner_evidence_sweep`;

/** The job's payload: the partner's id only. */
export function assertPartnerPayload(payload: unknown): { partnerId: string } {
  const p = payload as Record<string, unknown> | null;
  if (!p || typeof p !== 'object' || Object.keys(p).length !== 1 || !isPlainIdentifier(p.partnerId))
    throw new Error(`${PARTNER_EVIDENCE_TASK}: payload must be exactly { partnerId: <partner id> }`);
  return { partnerId: p.partnerId };
}

export function partnerEvidenceSweepTask(ctx: GatewayContext): Task {
  return async (_payload, helpers) => {
    for (const partnerId of await partnersToCheck(ctx.pool)) {
      // One job per partner at a time (its key), run once: the next sweep asks again, so no failed job piles up.
      await helpers.addJob(
        PARTNER_EVIDENCE_TASK,
        { partnerId },
        { jobKey: `partner-evidence:${partnerId}`, maxAttempts: 1 },
      );
    }
  };
}

export function partnerEvidenceTask(ctx: GatewayContext): Task {
  return async (payload) => {
    const { partnerId } = assertPartnerPayload(payload);
    try {
      const r = await checkPartnerLog(ctx, partnerId);
      if (r.outcome !== 'skipped') ctx.logger.info({ partner: partnerId, ...r }, 'partner evidence');
    } catch (err) {
      // The partner is down or answered badly: logged, and asked again at the next sweep.
      ctx.logger.warn(
        { partner: partnerId, err: { message: (err as Error).message } },
        'partner evidence request failed',
      );
    }
  };
}
