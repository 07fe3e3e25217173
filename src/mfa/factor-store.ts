import type { Queryable } from '../db/pool.ts';
import type { SealedSecret } from './totp-secret.ts';

/** What an account has enrolled; a second factor is a passkey or a confirmed TOTP authenticator. */
export interface FactorSummary {
  passkeys: number;
  totp: boolean;
  recoveryCodes: number;
}

export const hasSecondFactor = (f: FactorSummary): boolean => f.passkeys > 0 || f.totp;

export async function factorSummary(db: Queryable, name: string): Promise<FactorSummary> {
  const { rows } = await db.query<FactorSummary>(
    `SELECT (SELECT count(*)::int FROM mfa_passkeys WHERE user_name = $1) AS passkeys,
            EXISTS (SELECT 1 FROM mfa_totp WHERE user_name = $1 AND confirmed_at IS NOT NULL) AS totp,
            (SELECT count(*)::int FROM mfa_recovery_codes WHERE user_name = $1 AND used_at IS NULL) AS "recoveryCodes"`,
    [name],
  );
  return rows[0] ?? { passkeys: 0, totp: false, recoveryCodes: 0 };
}

export interface StoredPasskey {
  credentialId: string;
  userName: string;
  publicKey: Buffer;
  signCount: number;
  transports: string[];
}

export interface PasskeyListing {
  credentialId: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  backedUp: boolean;
}

export async function listPasskeys(db: Queryable, name: string): Promise<PasskeyListing[]> {
  const { rows } = await db.query<PasskeyListing>(
    `SELECT credential_id AS "credentialId", created_at AS "createdAt", last_used_at AS "lastUsedAt", backed_up AS "backedUp"
     FROM mfa_passkeys WHERE user_name = $1 ORDER BY created_at`,
    [name],
  );
  return rows;
}

/** The passkeys an authentication may name for an account (allowCredentials), or a registration exclude. */
export async function passkeyDescriptors(
  db: Queryable,
  name: string,
): Promise<Array<{ id: string; transports: string[] }>> {
  const { rows } = await db.query<{ id: string; transports: string[] }>(
    'SELECT credential_id AS id, transports FROM mfa_passkeys WHERE user_name = $1 ORDER BY created_at',
    [name],
  );
  return rows;
}

/** A passkey by credential id, of an account that is local and not disabled. */
export async function passkeyById(db: Queryable, credentialId: string): Promise<StoredPasskey | undefined> {
  const { rows } = await db.query<StoredPasskey>(
    `SELECT p.credential_id AS "credentialId", p.user_name AS "userName", p.public_key AS "publicKey",
            p.sign_count::int AS "signCount", p.transports
     FROM mfa_passkeys p JOIN audit_users u ON u.name = p.user_name
     WHERE p.credential_id = $1 AND u.disabled_at IS NULL AND NOT u.sso`,
    [credentialId],
  );
  return rows[0];
}

/** The account's WebAuthn user handle: the one its passkeys share, if it has any. */
export async function userHandleOf(db: Queryable, name: string): Promise<Buffer | undefined> {
  const { rows } = await db.query<{ user_handle: Buffer }>(
    'SELECT user_handle FROM mfa_passkeys WHERE user_name = $1 LIMIT 1',
    [name],
  );
  return rows[0]?.user_handle;
}

export async function addPasskey(
  db: Queryable,
  p: StoredPasskey & { userHandle: Buffer; backedUp: boolean },
): Promise<boolean> {
  const res = await db.query(
    `INSERT INTO mfa_passkeys (credential_id, user_name, user_handle, public_key, sign_count, transports, backed_up)
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
    [p.credentialId, p.userName, p.userHandle, p.publicKey, p.signCount, p.transports, p.backedUp],
  );
  return res.rowCount === 1;
}

/**
 * Record a verified use with the authenticator's new signature counter, only
 * if the counter stored is still the one checked against: of two concurrent
 * uses with the same counter, one loses.
 */
export async function recordPasskeyUse(
  db: Queryable,
  credentialId: string,
  checkedCount: number,
  newCount: number,
): Promise<boolean> {
  const res = await db.query(
    'UPDATE mfa_passkeys SET sign_count = $3, last_used_at = now() WHERE credential_id = $1 AND sign_count = $2',
    [credentialId, checkedCount, newCount],
  );
  return res.rowCount === 1;
}

export interface TotpRow {
  sealed: SealedSecret;
  confirmed: boolean;
  lastStep: number | null;
}

export async function totpRow(db: Queryable, name: string): Promise<TotpRow | undefined> {
  const { rows } = await db.query<{ ct: Buffer; iv: Buffer; confirmed: boolean; last_step: string | null }>(
    'SELECT secret_ct AS ct, secret_iv AS iv, confirmed_at IS NOT NULL AS confirmed, last_step FROM mfa_totp WHERE user_name = $1',
    [name],
  );
  const r = rows[0];
  return (
    r && {
      sealed: { ct: r.ct, iv: r.iv },
      confirmed: r.confirmed,
      lastStep: r.last_step === null ? null : Number(r.last_step),
    }
  );
}

/** Keep a new, unconfirmed TOTP secret (replacing an unconfirmed one); false if the account has a confirmed one. */
export async function storePendingTotp(db: Queryable, name: string, sealed: SealedSecret): Promise<boolean> {
  const res = await db.query(
    `INSERT INTO mfa_totp AS t (user_name, secret_ct, secret_iv) VALUES ($1, $2, $3)
     ON CONFLICT (user_name) DO UPDATE SET secret_ct = $2, secret_iv = $3, last_step = NULL, created_at = now()
     WHERE t.confirmed_at IS NULL`,
    [name, sealed.ct, sealed.iv],
  );
  return res.rowCount === 1;
}

/**
 * Accept a code's time step: only a step later than the last one accepted,
 * in one statement, so a code is good once even against concurrent requests.
 * `confirm` is the enrolment's first code (the row must be unconfirmed and
 * becomes active); otherwise the row must be confirmed.
 */
export async function acceptTotpStep(db: Queryable, name: string, step: number, confirm: boolean): Promise<boolean> {
  const res = await db.query(
    `UPDATE mfa_totp SET last_step = $2, confirmed_at = CASE WHEN $3 THEN now() ELSE confirmed_at END
     WHERE user_name = $1 AND (last_step IS NULL OR last_step < $2) AND (confirmed_at IS NULL) = $3`,
    [name, step, confirm],
  );
  return res.rowCount === 1;
}

/** Remove every factor of an account; returns what was removed. */
export async function deleteFactors(db: Queryable, name: string): Promise<FactorSummary> {
  const passkeys = (await db.query('DELETE FROM mfa_passkeys WHERE user_name = $1', [name])).rowCount ?? 0;
  const totp = ((await db.query('DELETE FROM mfa_totp WHERE user_name = $1', [name])).rowCount ?? 0) > 0;
  const recoveryCodes =
    (await db.query('DELETE FROM mfa_recovery_codes WHERE user_name = $1 AND used_at IS NULL', [name])).rowCount ?? 0;
  await db.query('DELETE FROM mfa_recovery_codes WHERE user_name = $1', [name]);
  return { passkeys, totp, recoveryCodes };
}
