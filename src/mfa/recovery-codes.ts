import { createHash, randomBytes } from 'node:crypto';
import type { Queryable } from '../db/pool.ts';
import { base32 } from './totp.ts';

/**
 * One-time recovery codes, shown once when the first factor is enrolled (or
 * a new set is asked for). Each is 80 random bits (16 base32 characters), so
 * a plain SHA-256 is enough to store it: unlike a password there is no
 * dictionary to try, and 2^80 guesses are out of reach offline, while a fast
 * hash lets the database find and spend a code in one statement. The hash
 * covers the account name, so a code is only ever good for its own account.
 */
export const RECOVERY_CODES = { count: 10, bytes: 10 } as const;

/** What a person may type: case, spaces and dashes do not matter. */
const normalise = (code: string) => code.toUpperCase().replace(/[\s-]/g, '');

const codeHash = (name: string, code: string) =>
  createHash('sha256')
    .update(`recovery-code:${name}:${normalise(code)}`)
    .digest();

/** Replace the account's codes with a new set; returns the codes, the only time they exist outside the hash. */
export async function issueRecoveryCodes(db: Queryable, name: string): Promise<string[]> {
  const codes = Array.from({ length: RECOVERY_CODES.count }, () =>
    (base32(randomBytes(RECOVERY_CODES.bytes)).match(/.{4}/g) ?? []).join('-'),
  );
  await db.query('DELETE FROM mfa_recovery_codes WHERE user_name = $1', [name]);
  await db.query('INSERT INTO mfa_recovery_codes (user_name, code_hash) SELECT $1, h FROM unnest($2::bytea[]) AS h', [
    name,
    codes.map((c) => codeHash(name, c)),
  ]);
  return codes;
}

/**
 * Spend a code: true once per code, in one statement, so two requests with
 * the same code cannot both succeed. Returns how many unused codes are left,
 * or undefined when the code is wrong or already used.
 */
export async function spendRecoveryCode(db: Queryable, name: string, code: string): Promise<number | undefined> {
  if (!/^[A-Z2-7]{16}$/.test(normalise(code))) return undefined;
  const spent = await db.query(
    'UPDATE mfa_recovery_codes SET used_at = now() WHERE user_name = $1 AND code_hash = $2 AND used_at IS NULL',
    [name, codeHash(name, code)],
  );
  if (spent.rowCount !== 1) return undefined;
  return unusedRecoveryCodes(db, name);
}

export async function unusedRecoveryCodes(db: Queryable, name: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM mfa_recovery_codes WHERE user_name = $1 AND used_at IS NULL',
    [name],
  );
  return rows[0]?.n ?? 0;
}
