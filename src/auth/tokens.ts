import { createHash, randomBytes } from 'node:crypto';
import type { Queryable } from '../db/pool.ts';

/**
 * Opaque access tokens. Only the SHA-256 of a token is stored, so the
 * database never holds a usable credential. Every check joins the client row:
 * disabling a client revokes its tokens at once, in every process.
 */
export const TOKEN_PREFIX = 'gwat_';
/** SMART Backend Services: access tokens live at most five minutes. */
export const MAX_TOKEN_TTL_SECONDS = 300;

export interface IssuedToken {
  accessToken: string;
  expiresIn: number;
}

export interface TokenGrant {
  clientId: string;
  scopes: string[];
}

export interface LiveGrant extends TokenGrant {
  /** The client's own requests-per-minute limit, if it has one. */
  rateLimit: number | null;
  /** The purpose of use its registration gives for submissions that state none ([]: none registered). */
  purposeOfUse: string[];
}

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export async function issueAccessToken(
  db: Queryable,
  grant: TokenGrant,
  ttlSeconds = MAX_TOKEN_TTL_SECONDS,
): Promise<IssuedToken> {
  const expiresIn = Math.min(ttlSeconds, MAX_TOKEN_TTL_SECONDS);
  const accessToken = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  // Expired rows are swept here rather than by a job: the index makes it cheap.
  await db.query('DELETE FROM auth_access_tokens WHERE expires_at < now()');
  await db.query(
    `INSERT INTO auth_access_tokens (token_hash, client_id, scopes, expires_at)
     VALUES ($1, $2, $3, now() + make_interval(secs => $4))`,
    [hashToken(accessToken), grant.clientId, grant.scopes, expiresIn],
  );
  return { accessToken, expiresIn };
}

/** The grant behind a live token of an enabled client, or undefined. */
export async function lookupAccessToken(db: Queryable, token: string): Promise<LiveGrant | undefined> {
  if (!token.startsWith(TOKEN_PREFIX) || token.length > 100) return undefined;
  const { rows } = await db.query<{
    client_id: string;
    scopes: string[];
    rate_limit: number | null;
    purpose_of_use: string[];
  }>({
    // Named: every authenticated request runs it, and a prepared statement skips its parse and plan.
    name: 'lookup-access-token',
    text: `SELECT t.client_id, t.scopes, c.rate_limit, c.purpose_of_use FROM auth_access_tokens t JOIN auth_clients c ON c.id = t.client_id
      WHERE t.token_hash = $1 AND t.expires_at > now() AND c.enabled`,
    values: [hashToken(token)],
  });
  const row = rows[0];
  return row
    ? { clientId: row.client_id, scopes: row.scopes, rateLimit: row.rate_limit, purposeOfUse: row.purpose_of_use }
    : undefined;
}

export async function revokeClientTokens(db: Queryable, clientId: string): Promise<void> {
  await db.query('DELETE FROM auth_access_tokens WHERE client_id = $1', [clientId]);
}
