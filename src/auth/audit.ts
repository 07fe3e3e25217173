import type pg from 'pg';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import type { Logger } from '../gateway-context.ts';
import { withinTransaction } from '../db/pool.ts';

export type AuthFailureReason = string;

/** Who made the request, as far as the audit trail may say: ids and addresses, never credentials. */
export interface AuthAuditSubject {
  clientId?: string;
  remoteAddress?: string;
}

function agent(s: AuthAuditSubject): AuditInput['agent'] {
  return {
    type: s.clientId ? 'client' : 'anonymous',
    id: s.clientId ?? 'unknown',
    ...(s.remoteAddress ? { network: s.remoteAddress } : {}),
  };
}

/**
 * Record an authentication or authorization failure in its own transaction.
 * A refused request changes nothing else, so there is nothing to share a
 * transaction with; a failing audit write is logged, and the refusal stands.
 */
export async function auditRefusal(
  pool: pg.Pool,
  logger: Logger,
  type: 'auth.failure' | 'authz.denied',
  subject: AuthAuditSubject,
  detail: Record<string, string | number | boolean | null>,
): Promise<void> {
  const client = await pool.connect().catch((err: unknown) => {
    logger.error({ err }, 'audit: no database connection for an auth refusal');
    return undefined;
  });
  if (!client) return;
  try {
    await withinTransaction(client, (db) =>
      appendAudit(db, [{ type, outcome: 'minor-failure', agent: agent(subject), detail }]),
    );
  } catch (err) {
    logger.error({ err, type }, 'audit: could not record an auth refusal');
  } finally {
    client.release();
  }
}

export function tokenIssuedEvent(
  subject: AuthAuditSubject & { clientId: string },
  scopes: string[],
  expiresIn: number,
): AuditInput {
  return {
    type: 'auth.token-issued',
    outcome: 'success',
    agent: agent(subject),
    detail: { scope: scopes.join(' '), expires_in: expiresIn },
  };
}
