import type { Queryable } from '../db/pool.ts';

export type CeremonyPurpose = 'registration' | 'authentication';

/** How long a browser has to answer a WebAuthn challenge (the options' timeout is the same). */
export const CHALLENGE_TTL_MS = 2 * 60_000;

/** Remember a challenge the gateway issued, bound to the session that asked for it (none for a passkey sign-in). */
export async function rememberChallenge(
  db: Queryable,
  challenge: string,
  purpose: CeremonyPurpose,
  sessionHash: Buffer | undefined,
  userHandle?: Buffer,
): Promise<void> {
  await db.query('DELETE FROM mfa_challenges WHERE expires_at < now()');
  await db.query(
    'INSERT INTO mfa_challenges (challenge, purpose, session_hash, user_handle, expires_at) VALUES ($1, $2, $3, $4, $5)',
    [challenge, purpose, sessionHash ?? null, userHandle ?? null, new Date(Date.now() + CHALLENGE_TTL_MS)],
  );
}

/**
 * Take a challenge back, once: found only if the gateway issued it for this
 * purpose and session, it has not expired, and nobody took it before. A
 * registration's challenge comes back with the user handle it was issued with.
 */
export async function takeChallenge(
  db: Queryable,
  challenge: string,
  purpose: CeremonyPurpose,
  sessionHash: Buffer | undefined,
): Promise<{ userHandle: Buffer | null } | undefined> {
  const { rows } = await db.query<{ user_handle: Buffer | null }>(
    `DELETE FROM mfa_challenges WHERE challenge = $1 AND purpose = $2
     AND session_hash IS NOT DISTINCT FROM $3 AND expires_at > now() RETURNING user_handle`,
    [challenge, purpose, sessionHash ?? null],
  );
  return rows[0] && { userHandle: rows[0].user_handle };
}
