import { appendAudit } from '../audit/append.ts';
import { inTransaction } from '../db/pool.ts';
import { GatewayError } from '../errors.ts';
import type { GatewayContext } from '../gateway-context.ts';

export interface RetentionHold {
  exchangeId: string;
  heldBy: string;
  heldAt: Date;
}

/** Exchange ids are ours (UUIDs) or a partner's as its messages name them: plain text, bounded. */
function checkedId(exchangeId: string): string {
  if (!/^[A-Za-z0-9._:-]{1,200}$/.test(exchangeId))
    throw new GatewayError('INVALID_VALUE', 'an exchange id is 1 to 200 letters, digits or . _ : -');
  return exchangeId;
}

/**
 * A legal hold: retention keeps every delivery and inbox message of the
 * exchange, whatever its age, until the hold is released. Content already
 * purged stays purged. Placing and releasing are audited with who did it.
 */
export async function placeHold(ctx: Pick<GatewayContext, 'pool'>, exchangeId: string, by: string): Promise<boolean> {
  const id = checkedId(exchangeId);
  return inTransaction(ctx.pool, async (client) => {
    const { rowCount } = await client.query(
      'INSERT INTO retention_holds (exchange_id, held_by) VALUES ($1, $2) ON CONFLICT DO NOTHING',
      [id, by],
    );
    if (rowCount === 0) return false;
    await appendAudit(client, [
      {
        type: 'retention.held',
        outcome: 'success',
        agent: { type: 'user', id: by },
        entity: [{ type: 'exchange', id }],
      },
    ]);
    return true;
  });
}

export async function releaseHold(ctx: Pick<GatewayContext, 'pool'>, exchangeId: string, by: string): Promise<boolean> {
  const id = checkedId(exchangeId);
  return inTransaction(ctx.pool, async (client) => {
    const { rowCount } = await client.query('DELETE FROM retention_holds WHERE exchange_id = $1', [id]);
    if (rowCount === 0) return false;
    await appendAudit(client, [
      {
        type: 'retention.released',
        outcome: 'success',
        agent: { type: 'user', id: by },
        entity: [{ type: 'exchange', id }],
      },
    ]);
    return true;
  });
}

export async function listHolds(ctx: Pick<GatewayContext, 'pool'>): Promise<RetentionHold[]> {
  const { rows } = await ctx.pool.query<{ exchange_id: string; held_by: string; held_at: Date }>(
    'SELECT exchange_id, held_by, held_at FROM retention_holds ORDER BY held_at',
  );
  return rows.map((r) => ({ exchangeId: r.exchange_id, heldBy: r.held_by, heldAt: r.held_at }));
}
