import type pg from 'pg';
import { appendAudit } from '../audit/append.ts';
import { endSessionsOf } from '../audit/users.ts';
import { inTransaction } from '../db/pool.ts';
import { GatewayError } from '../errors.ts';
import { deleteFactors, type FactorSummary } from './factor-store.ts';

/**
 * The recovery path of last resort: an administrator removes every second
 * factor of a local account (passkeys, TOTP, recovery codes) and ends its
 * sessions, in one transaction with its audit entry. With MFA_REQUIRED the
 * person's next password sign-in reaches only the enrolment page.
 */
export async function resetFactors(pool: pg.Pool, name: string, administrator: string): Promise<FactorSummary> {
  return inTransaction(pool, async (c) => {
    const { rows } = await c.query<{ sso: boolean }>('SELECT sso FROM audit_users WHERE name = $1 FOR UPDATE', [name]);
    if (!rows[0]) throw new GatewayError('NOT_FOUND', `no account ${name}`);
    if (rows[0].sso)
      throw new GatewayError('CONFLICT', `${name} signs in through single sign-on; its issuer keeps its factors`);
    const removed = await deleteFactors(c, name);
    const sessions = await endSessionsOf(c, name);
    await appendAudit(c, [
      {
        type: 'auth.factors-reset',
        outcome: 'success',
        agent: { type: 'user', id: administrator },
        entity: [{ type: 'audit-user', id: name }],
        detail: {
          user: name,
          passkeys: removed.passkeys,
          totp: removed.totp,
          recovery_codes: removed.recoveryCodes,
          sessions_ended: sessions,
        },
      },
    ]);
    return removed;
  });
}
