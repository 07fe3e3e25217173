import type { GatewayContext } from '../gateway-context.ts';
import { observePartnerKeys, type ObservationResult } from './partner-key-log.ts';

export type PartnerRefreshContext = Pick<GatewayContext, 'pool' | 'directory' | 'logger'> & {
  config: Pick<GatewayContext['config'], 'partnerJwksRefresh'>;
};

export interface PartnerRefresh {
  partner: string;
  ok: boolean;
  error?: string;
  observed?: ObservationResult;
}

/**
 * Refetch the JWKS of every partner whose last check is older than
 * PARTNER_JWKS_REFRESH (all of them with force) and record what was seen in
 * the key-transparency log. One partner's failure is recorded and does not
 * stop the others; its cached keys keep serving deliveries.
 */
export async function refreshPartnerKeys(
  ctx: PartnerRefreshContext,
  options: { force?: boolean; now?: Date } = {},
): Promise<PartnerRefresh[]> {
  const now = options.now ?? new Date();
  const { rows } = await ctx.pool.query<{ partner_id: string; checked_at: Date }>(
    'SELECT partner_id, checked_at FROM partner_jwks_checks',
  );
  const last = new Map(rows.map((r) => [r.partner_id, r.checked_at.getTime()]));
  const out: PartnerRefresh[] = [];
  for (const p of await ctx.directory.list()) {
    if (!options.force && now.getTime() - (last.get(p.id) ?? 0) < ctx.config.partnerJwksRefresh) continue;
    let result: PartnerRefresh;
    try {
      const jwks = await ctx.directory.refreshKeys(p);
      result = { partner: p.id, ok: true, observed: await observePartnerKeys(ctx.pool, p.id, jwks, now) };
      ctx.directory.forget();
    } catch (err) {
      result = { partner: p.id, ok: false, error: (err as Error).message.slice(0, 200) };
      ctx.logger.warn({ partner: p.id, reason: result.error }, 'partner JWKS refresh failed');
    }
    await ctx.pool.query(
      `INSERT INTO partner_jwks_checks (partner_id, checked_at, ok, error) VALUES ($1, $2, $3, $4)
       ON CONFLICT (partner_id) DO UPDATE SET checked_at = $2, ok = $3, error = $4`,
      [p.id, now, result.ok, result.error ?? null],
    );
    out.push(result);
  }
  return out;
}
