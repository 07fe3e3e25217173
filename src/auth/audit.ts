import type pg from 'pg';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import type { Logger } from '../gateway-context.ts';
import { inTransaction } from '../db/pool.ts';

export type AuthFailureReason = string;

/** Who made the request, as far as the audit trail may say: ids and addresses, never credentials. */
export interface AuthAuditSubject {
  clientId?: string;
  /** A person signed in to the audit page or the console (when no client token was used). */
  user?: string;
  remoteAddress?: string;
}

function agent(s: AuthAuditSubject): AuditInput['agent'] {
  return {
    type: s.clientId ? 'client' : s.user ? 'user' : 'anonymous',
    id: s.clientId ?? s.user ?? 'unknown',
    ...(s.remoteAddress ? { network: s.remoteAddress } : {}),
  };
}

const audited = new WeakSet<object>();

/** The pipeline that threw `err` has audited the refusal itself: the edge must not audit it twice. */
export function markRefusalAudited<E extends object>(err: E): E {
  audited.add(err);
  return err;
}

export function isRefusalAudited(err: unknown): boolean {
  return typeof err === 'object' && err !== null && audited.has(err);
}

/**
 * The one failure policy of refusal audits: the refusal stands. A failing
 * audit write is logged as an error and never turns the caller's 4xx into a 500.
 */
export async function keepRefusal(logger: Logger, type: string, write: () => Promise<unknown>): Promise<void> {
  try {
    await write();
  } catch (err) {
    logger.error({ err: { message: (err as Error).message }, type }, 'audit: could not record a refusal; it stands');
  }
}

/**
 * Record an authentication or authorization failure, or a request refused
 * for an invalid value, in its own transaction.
 * A refused request changes nothing else, so there is nothing to share a
 * transaction with.
 */
export async function auditRefusal(
  pool: pg.Pool,
  logger: Logger,
  type: 'auth.failure' | 'authz.denied' | 'request.refused' | 'sso.backchannel-refused',
  subject: AuthAuditSubject,
  detail: Record<string, string | number | boolean | null>,
): Promise<void> {
  await keepRefusal(logger, type, () =>
    inTransaction(pool, (db) => appendAudit(db, [{ type, outcome: 'minor-failure', agent: agent(subject), detail }])),
  );
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
