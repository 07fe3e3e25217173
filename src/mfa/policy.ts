import type { SessionStage } from '../audit/users.ts';
import { hasSecondFactor, type FactorSummary } from './factor-store.ts';

/**
 * The one rule of what a correct password gives a local account: a full
 * session only if it has no second factor and MFA_REQUIRED is off; the
 * second-factor step if it has one; enrolment only if it must have one and
 * has none. Sessions through the issuer (SSO) never come here.
 */
export function stageAfterPassword(factors: FactorSummary, mfaRequired: boolean): SessionStage {
  if (hasSecondFactor(factors)) return 'second-factor';
  return mfaRequired ? 'enrol' : 'full';
}

/** The error code a pending session gets from every route but the second-factor ones. */
export function pendingRefusal(stage: Exclude<SessionStage, 'full'>): {
  code: 'MFA_ENROLMENT_REQUIRED' | 'SECOND_FACTOR_REQUIRED';
  message: string;
} {
  return stage === 'enrol'
    ? {
        code: 'MFA_ENROLMENT_REQUIRED',
        message: 'this account must enrol a second factor (a passkey or an authenticator app) at /auth/mfa/ first',
      }
    : {
        code: 'SECOND_FACTOR_REQUIRED',
        message: 'finish signing in with your second factor at /auth/mfa/ first',
      };
}

/** Where a person goes once signed in: the page of the account's role. */
export const homeOf = (role: 'compliance' | 'operator'): string => (role === 'operator' ? '/console/' : '/audit/ui/');
