import type pg from 'pg';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import type { AuditEventType } from '../audit/events.ts';
import { claimLoginAttempt, clearLoginFailures, isLoginLocked, LOGIN_POLICY } from '../audit/login-backoff.ts';
import { createSession, endSession, localAccountRole, type AccountRole, type SessionState } from '../audit/users.ts';
import { inTransaction } from '../db/pool.ts';
import { GatewayError } from '../errors.ts';
import type { GatewayContext } from '../gateway-context.ts';
import { factorSummary, totpRow, acceptTotpStep } from './factor-store.ts';
import { finishAuthentication, relyingParty } from './passkeys.ts';
import { homeOf, stageAfterPassword } from './policy.ts';
import { spendRecoveryCode } from './recovery-codes.ts';
import { matchingStep } from './totp.ts';
import { openTotpSecret } from './totp-secret.ts';

/**
 * Signing in to the browser pages with a local account, after the password:
 * the session the password gives (full, or pending the second factor or an
 * enrolment), the second-factor step (passkey, TOTP code or recovery code)
 * that turns a pending session into a full one under a new cookie, and the
 * sign-in with a passkey alone. Every step is audited with the person's name.
 */
export type MfaDeps = Pick<GatewayContext, 'pool' | 'hsm' | 'config'>;

/** A session cookie's session, with the cookie itself (needed to end it when the sign-in completes). */
export type CurrentSession = SessionState & { token: string };

export interface SignedIn {
  token: string;
  expiresAt: Date;
  /** The page the person goes to next: the enrolment or second-factor page, or the page of the role. */
  next: string;
  stage: 'full' | 'second-factor' | 'enrol';
}

export const MFA_PAGE = '/auth/mfa/';
const WRONG_CODE = 'wrong or already used code';

/** One audit entry about a person's own sign-in or factors. */
export function factorEntry(
  type: AuditEventType,
  name: string,
  network: string | undefined,
  detail: AuditInput['detail'],
  outcome: AuditInput['outcome'] = 'success',
): AuditInput {
  return { type, outcome, agent: { type: 'user', id: name, ...(network ? { network } : {}) }, detail };
}

/** Record refusals in their own transaction: nothing else changed. */
const recordFailure = (pool: pg.Pool, name: string, network: string | undefined, detail: AuditInput['detail']) =>
  inTransaction(pool, (c) =>
    appendAudit(c, [factorEntry('auth.factor-failed', name, network, detail, 'minor-failure')]),
  );

/**
 * A full session for `name`, in the caller's transaction: the pending one
 * (if any) ends, the run of failed attempts ends, and the sign-in is
 * recorded as compliance.login with the factors that made it.
 */
export async function completeSignIn(
  c: pg.PoolClient,
  pending: CurrentSession | undefined,
  name: string,
  role: AccountRole,
  factors: string[],
  network: string | undefined,
): Promise<SignedIn> {
  if (pending) await endSession(c, pending.token);
  await clearLoginFailures(c, name);
  const session = await createSession(c, name);
  await appendAudit(c, [
    factorEntry('compliance.login', name, network, { via: 'audit-ui', factors: factors.join('+') }),
  ]);
  return { ...session, next: homeOf(role), stage: 'full' };
}

/**
 * The password was right: a full session when no second step is due (the
 * run of failures ends), else a short pending session. A pending sign-in
 * keeps the run of failures going, so second-factor guesses count toward the
 * same backoff and lockout as passwords, and signing in again with the
 * password does not reset them.
 */
export async function passwordAccepted(
  deps: MfaDeps,
  name: string,
  role: AccountRole,
  network: string | undefined,
): Promise<SignedIn> {
  const stage = stageAfterPassword(await factorSummary(deps.pool, name), deps.config.mfaRequired);
  return inTransaction(deps.pool, async (c) => {
    if (stage === 'full') return completeSignIn(c, undefined, name, role, ['password'], network);
    const session = await createSession(c, name, new Date(), undefined, stage);
    await appendAudit(c, [
      factorEntry('auth.factor-used', name, network, { via: 'audit-ui', factor: 'password', next: stage }),
    ]);
    return { ...session, next: MFA_PAGE, stage };
  });
}

/**
 * Count one second-factor attempt like a password attempt (the same
 * per-account backoff and lockout), or refuse it, audited, while the account
 * waits or is locked. A locked account's pending session ends.
 */
async function claimAttempt(
  deps: MfaDeps,
  session: CurrentSession,
  factor: string,
  network: string | undefined,
): Promise<number> {
  const gate = await claimLoginAttempt(deps.pool, session.name);
  if (gate.kind === 'attempt') return gate.failures;
  if (gate.kind === 'wait') {
    await recordFailure(deps.pool, session.name, network, { factor, reason: 'backoff', retry_after: gate.retryAfter });
    throw new GatewayError('RATE_LIMITED', `too many failed attempts; retry in ${gate.retryAfter} s`, {
      retryAfter: gate.retryAfter,
    });
  }
  await endSession(deps.pool, session.token);
  await recordFailure(deps.pool, session.name, network, { factor, reason: 'account_locked', failures: gate.failures });
  throw new GatewayError('UNAUTHENTICATED', 'this account is locked; an administrator can unlock it');
}

/** A refused attempt: audited with the run's count; at the lockout the pending session ends too. */
async function refuseAttempt(
  deps: MfaDeps,
  session: CurrentSession,
  failures: number,
  detail: Record<string, string>,
  network: string | undefined,
  message: string,
): Promise<never> {
  const locked = failures >= LOGIN_POLICY.lockAfter;
  if (locked) await endSession(deps.pool, session.token);
  await recordFailure(deps.pool, session.name, network, { ...detail, failures, locked });
  throw new GatewayError('UNAUTHENTICATED', message);
}

/** The second factor by TOTP code: its time step must be later than the last one accepted. */
export async function secondFactorTotp(
  deps: MfaDeps,
  session: CurrentSession,
  code: string,
  network: string | undefined,
  now = new Date(),
): Promise<SignedIn> {
  const failures = await claimAttempt(deps, session, 'totp', network);
  const row = await totpRow(deps.pool, session.name);
  if (!row?.confirmed)
    return refuseAttempt(deps, session, failures, { factor: 'totp', reason: 'not_enrolled' }, network, WRONG_CODE);
  const secret = await openTotpSecret(deps.hsm, deps.pool, session.name, row.sealed);
  const step = matchingStep(secret, code, now);
  secret.fill(0);
  if (step === undefined)
    return refuseAttempt(deps, session, failures, { factor: 'totp', reason: 'wrong_code' }, network, WRONG_CODE);
  if (!(await acceptTotpStep(deps.pool, session.name, step, false)))
    return refuseAttempt(deps, session, failures, { factor: 'totp', reason: 'code_reused' }, network, WRONG_CODE);
  return inTransaction(deps.pool, async (c) => {
    await appendAudit(c, [factorEntry('auth.factor-used', session.name, network, { via: 'audit-ui', factor: 'totp' })]);
    return completeSignIn(c, session, session.name, session.role, ['password', 'totp'], network);
  });
}

/** The second factor by a one-time recovery code, which is spent. */
export async function secondFactorRecoveryCode(
  deps: MfaDeps,
  session: CurrentSession,
  code: string,
  network: string | undefined,
): Promise<SignedIn & { remaining: number }> {
  const failures = await claimAttempt(deps, session, 'recovery-code', network);
  const remaining = await spendRecoveryCode(deps.pool, session.name, code);
  if (remaining === undefined)
    return refuseAttempt(
      deps,
      session,
      failures,
      { factor: 'recovery-code', reason: 'wrong_code' },
      network,
      'wrong or already used recovery code',
    );
  const signedIn = await inTransaction(deps.pool, async (c) => {
    await appendAudit(c, [factorEntry('auth.recovery-code-used', session.name, network, { remaining })]);
    return completeSignIn(c, session, session.name, session.role, ['password', 'recovery-code'], network);
  });
  return { ...signedIn, remaining };
}

/** The second factor by passkey: an assertion by one of the account's own passkeys. */
export async function secondFactorPasskey(
  deps: MfaDeps,
  session: CurrentSession,
  sessionHash: Buffer,
  response: unknown,
  network: string | undefined,
): Promise<SignedIn> {
  const failures = await claimAttempt(deps, session, 'passkey', network);
  const outcome = await finishAuthentication(
    deps.pool,
    relyingParty(deps.config.baseUrl),
    session.name,
    sessionHash,
    response,
  );
  if (!outcome.ok)
    return refuseAttempt(
      deps,
      session,
      failures,
      { factor: 'passkey', reason: outcome.reason },
      network,
      'the passkey could not be verified',
    );
  return inTransaction(deps.pool, async (c) => {
    await appendAudit(c, [
      factorEntry('auth.factor-used', session.name, network, {
        via: 'audit-ui',
        factor: 'passkey',
        credential: outcome.value.credentialId.slice(0, 16),
      }),
    ]);
    return completeSignIn(c, session, session.name, session.role, ['password', 'passkey'], network);
  });
}

/**
 * A sign-in with a passkey alone (user verification makes it two factors in
 * one: the device and its PIN or biometric). The account comes from the
 * credential; a locked account stays locked.
 */
export async function passkeySignIn(deps: MfaDeps, response: unknown, network: string | undefined): Promise<SignedIn> {
  const outcome = await finishAuthentication(
    deps.pool,
    relyingParty(deps.config.baseUrl),
    undefined,
    undefined,
    response,
  );
  if (!outcome.ok) {
    await recordFailure(deps.pool, outcome.name ?? 'unknown', network, { factor: 'passkey', reason: outcome.reason });
    throw new GatewayError('UNAUTHENTICATED', 'the passkey could not be verified');
  }
  const { name, credentialId } = outcome.value;
  const role = await localAccountRole(deps.pool, name);
  if (!role || (await isLoginLocked(deps.pool, name))) {
    await recordFailure(deps.pool, name, network, { factor: 'passkey', reason: role ? 'account_locked' : 'disabled' });
    throw new GatewayError('UNAUTHENTICATED', 'the passkey could not be verified');
  }
  return inTransaction(deps.pool, async (c) => {
    await appendAudit(c, [
      factorEntry('auth.factor-used', name, network, {
        via: 'audit-ui',
        factor: 'passkey',
        credential: credentialId.slice(0, 16),
      }),
    ]);
    return completeSignIn(c, undefined, name, role, ['passkey'], network);
  });
}
