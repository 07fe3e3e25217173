import { randomBytes } from 'node:crypto';
import QRCode from 'qrcode';
import type { PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/server';
import { appendAudit } from '../audit/append.ts';
import { inTransaction } from '../db/pool.ts';
import { GatewayError } from '../errors.ts';
import { factorSummary, storePendingTotp, totpRow, acceptTotpStep, hasSecondFactor } from './factor-store.ts';
import { finishRegistration, registrationOptions, relyingParty } from './passkeys.ts';
import { issueRecoveryCodes, RECOVERY_CODES } from './recovery-codes.ts';
import { completeSignIn, factorEntry, type CurrentSession, type MfaDeps, type SignedIn } from './sign-in.ts';
import { base32, matchingStep, otpauthUri, TOTP } from './totp.ts';
import { openTotpSecret, sealTotpSecret } from './totp-secret.ts';

/**
 * Enrolling second factors: a passkey, or a TOTP authenticator that is
 * active once its first code confirms it. The first factor an account
 * enrols comes with its recovery codes, shown this once. An enrolment from
 * a pending `enrol` session completes the sign-in (the ceremony or the code
 * proved the new factor), under a new cookie.
 */
export interface Enrolled {
  /** The new recovery codes, when this enrolment issued them: shown once, never again. */
  recoveryCodes?: string[];
  /** The full session that replaces a pending one. */
  signedIn?: SignedIn;
}

/** Only a local account enrols here; an issuer (SSO) account's factors are the issuer's. */
function mayEnrol(session: CurrentSession): void {
  if (session.sso)
    throw new GatewayError('FORBIDDEN', 'this account signs in through single sign-on; its issuer does MFA');
  if (session.stage === 'second-factor')
    throw new GatewayError(
      'SECOND_FACTOR_REQUIRED',
      'finish signing in with your second factor before enrolling another',
    );
}

/** The common end of an enrolment: recovery codes for a first factor, the audit entries, the completed sign-in. */
async function enrolled(
  deps: MfaDeps,
  session: CurrentSession,
  factor: 'passkey' | 'totp',
  network: string | undefined,
  detail: Record<string, string> = {},
): Promise<Enrolled> {
  return inTransaction(deps.pool, async (c) => {
    const before = await factorSummary(c, session.name);
    const recoveryCodes = before.recoveryCodes === 0 ? await issueRecoveryCodes(c, session.name) : undefined;
    await appendAudit(c, [
      factorEntry('auth.factor-enrolled', session.name, network, { factor, ...detail }),
      ...(recoveryCodes
        ? [
            factorEntry('auth.factor-enrolled', session.name, network, {
              factor: 'recovery-codes',
              count: RECOVERY_CODES.count,
            }),
          ]
        : []),
    ]);
    const signedIn =
      session.stage === 'enrol'
        ? await completeSignIn(c, session, session.name, session.role, ['password', factor], network)
        : undefined;
    return { ...(recoveryCodes ? { recoveryCodes } : {}), ...(signedIn ? { signedIn } : {}) };
  });
}

export async function passkeyRegistrationOptions(
  deps: MfaDeps,
  session: CurrentSession,
  sessionHash: Buffer,
): Promise<PublicKeyCredentialCreationOptionsJSON> {
  mayEnrol(session);
  return registrationOptions(deps.pool, relyingParty(deps.config.baseUrl), session.name, sessionHash);
}

export async function registerPasskey(
  deps: MfaDeps,
  session: CurrentSession,
  sessionHash: Buffer,
  response: unknown,
  network: string | undefined,
): Promise<Enrolled> {
  mayEnrol(session);
  const outcome = await finishRegistration(
    deps.pool,
    relyingParty(deps.config.baseUrl),
    session.name,
    sessionHash,
    response,
  );
  if (!outcome.ok) {
    await inTransaction(deps.pool, (c) =>
      appendAudit(c, [
        factorEntry(
          'auth.factor-failed',
          session.name,
          network,
          { factor: 'passkey', during: 'enrolment', reason: outcome.reason },
          'minor-failure',
        ),
      ]),
    );
    throw new GatewayError('BAD_REQUEST', 'the passkey could not be registered; try again');
  }
  return enrolled(deps, session, 'passkey', network, { credential: outcome.value.slice(0, 16) });
}

/** A new TOTP secret, sealed in the HSM and kept unconfirmed until its first code. */
export async function startTotpEnrolment(deps: MfaDeps, session: CurrentSession): Promise<void> {
  mayEnrol(session);
  const secret = randomBytes(TOTP.secretBytes);
  const sealed = await sealTotpSecret(deps.hsm, deps.pool, session.name, secret);
  secret.fill(0);
  if (!(await storePendingTotp(deps.pool, session.name, sealed)))
    throw new GatewayError(
      'CONFLICT',
      'an authenticator app is already enrolled for this account; an administrator can reset its factors',
    );
}

/** What the enrolment page shows of an unconfirmed TOTP secret: the QR code (SVG, drawn here) and the key typed by hand. */
export async function pendingTotp(
  deps: MfaDeps,
  session: CurrentSession,
): Promise<{ key: string; uri: string; qrSvg: string } | undefined> {
  if (session.sso) return undefined;
  const row = await totpRow(deps.pool, session.name);
  if (!row || row.confirmed) return undefined;
  const secret = await openTotpSecret(deps.hsm, deps.pool, session.name, row.sealed);
  const uri = otpauthUri(`FHIR gateway ${new URL(deps.config.baseUrl).host}`, session.name, secret);
  const key = (base32(secret).match(/.{1,4}/g) ?? []).join(' ');
  secret.fill(0);
  const qrSvg = await QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
  return { key, uri, qrSvg };
}

/** The first code from the authenticator app: it activates the secret (and the code is spent). */
export async function confirmTotp(
  deps: MfaDeps,
  session: CurrentSession,
  code: string,
  network: string | undefined,
  now = new Date(),
): Promise<Enrolled> {
  mayEnrol(session);
  const row = await totpRow(deps.pool, session.name);
  if (!row || row.confirmed) throw new GatewayError('CONFLICT', 'no authenticator app enrolment is waiting for a code');
  const secret = await openTotpSecret(deps.hsm, deps.pool, session.name, row.sealed);
  const step = matchingStep(secret, code, now);
  secret.fill(0);
  if (step === undefined || !(await acceptTotpStep(deps.pool, session.name, step, true))) {
    await inTransaction(deps.pool, (c) =>
      appendAudit(c, [
        factorEntry(
          'auth.factor-failed',
          session.name,
          network,
          { factor: 'totp', during: 'enrolment', reason: 'wrong_code' },
          'minor-failure',
        ),
      ]),
    );
    throw new GatewayError(
      'BAD_REQUEST',
      'that code does not match; check the time on the device and try the next one',
      {
        expression: 'code',
      },
    );
  }
  return enrolled(deps, session, 'totp', network);
}

/** A new set of recovery codes (the old ones stop working), for a full session of an account with a second factor. */
export async function renewRecoveryCodes(
  deps: MfaDeps,
  session: CurrentSession,
  network: string | undefined,
): Promise<string[]> {
  mayEnrol(session);
  if (session.stage !== 'full' || !hasSecondFactor(await factorSummary(deps.pool, session.name)))
    throw new GatewayError('CONFLICT', 'enrol a passkey or an authenticator app first');
  return inTransaction(deps.pool, async (c) => {
    const codes = await issueRecoveryCodes(c, session.name);
    await appendAudit(c, [
      factorEntry('auth.factor-enrolled', session.name, network, {
        factor: 'recovery-codes',
        count: RECOVERY_CODES.count,
        replaced: true,
      }),
    ]);
    return codes;
  });
}
