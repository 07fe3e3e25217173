import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { GatewayError } from '../errors.ts';
import type { Queryable } from '../db/pool.ts';

/**
 * Local accounts of the browser pages (compliance officers of the audit page,
 * operators of the console): named accounts (HIPAA unique user
 * identification), created by an administrator with `gateway audit users add`,
 * scrypt-hashed passwords, short server-side sessions addressed by an opaque
 * cookie whose SHA-256 is all the database holds.
 */
const scryptAsync = promisify(scrypt) as (pw: string, salt: Buffer, len: number, opts: object) => Promise<Buffer>;
const PARAMS = { N: 16384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
export const SESSION_TTL_MS = 15 * 60_000;

/** The one list of roles: compliance reads the audit trail (/audit/ui), operator runs /console. */
export const ACCOUNT_ROLES = ['compliance', 'operator'] as const;
export type AccountRole = (typeof ACCOUNT_ROLES)[number];

export function isAccountRole(value: unknown): value is AccountRole {
  return typeof value === 'string' && (ACCOUNT_ROLES as readonly string[]).includes(value);
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scryptAsync(password, salt, 32, PARAMS);
  return `scrypt$${PARAMS.N}$${PARAMS.r}$${PARAMS.p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

async function checkPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !salt || !hash) return false;
  const want = Buffer.from(hash, 'base64');
  const got = await scryptAsync(password, Buffer.from(salt, 'base64'), want.length, {
    N: Number(n),
    r: Number(r),
    p: Number(p),
    maxmem: PARAMS.maxmem,
  });
  return timingSafeEqual(got, want);
}

// A real hash to compare against for unknown names, so timing does not reveal which names exist.
let decoy: Promise<string> | undefined;

/** Create an account; returns its initial password, shown once. */
export async function addAuditUser(db: Queryable, name: string, role: AccountRole = 'compliance'): Promise<string> {
  if (!/^[A-Za-z0-9._@-]{1,64}$/.test(name))
    throw new GatewayError('INVALID_VALUE', 'user names are 1-64 of A-Z a-z 0-9 . _ @ -');
  if (!isAccountRole(role))
    throw new GatewayError('INVALID_VALUE', `role must be one of ${ACCOUNT_ROLES.join(', ')}`, { expression: 'role' });
  const password = randomBytes(18).toString('base64url');
  const res = await db.query(
    'INSERT INTO audit_users (name, password_hash, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
    [name, await hashPassword(password), role],
  );
  if (res.rowCount === 0) throw new GatewayError('CONFLICT', `audit user ${name} already exists`);
  return password;
}

export async function disableAuditUser(db: Queryable, name: string): Promise<boolean> {
  const res = await db.query('UPDATE audit_users SET disabled_at = now() WHERE name = $1 AND disabled_at IS NULL', [
    name,
  ]);
  await db.query('DELETE FROM audit_sessions WHERE user_name = $1', [name]);
  return (res.rowCount ?? 0) > 0;
}

export async function listAuditUsers(
  db: Queryable,
): Promise<Array<{ name: string; role: AccountRole; created_at: Date; disabled_at: Date | null }>> {
  return (await db.query('SELECT name, role, created_at, disabled_at FROM audit_users ORDER BY name')).rows;
}

export async function checkLogin(db: Queryable, name: string, password: string): Promise<boolean> {
  const { rows } = await db.query<{ password_hash: string }>(
    'SELECT password_hash FROM audit_users WHERE name = $1 AND disabled_at IS NULL',
    [name],
  );
  const stored = rows[0]?.password_hash ?? (await (decoy ??= hashPassword(randomBytes(16).toString('hex'))));
  const ok = await checkPassword(password, stored);
  return ok && rows.length === 1;
}

/** The role of a local (not SSO) account that is not disabled, or undefined. */
export async function localAccountRole(db: Queryable, name: string): Promise<AccountRole | undefined> {
  const { rows } = await db.query<{ role: AccountRole }>(
    'SELECT role FROM audit_users WHERE name = $1 AND disabled_at IS NULL AND NOT sso',
    [name],
  );
  return rows[0]?.role;
}

/** What the database keeps of a session cookie: its SHA-256 (also what WebAuthn challenges are bound to). */
export const sessionTokenHash = (token: string): Buffer => createHash('sha256').update(token).digest();

/**
 * A session is `full`, or pending after a password: `second-factor` (the
 * account has one to use) or `enrol` (MFA_REQUIRED and none yet). A pending
 * session reaches the second-factor routes only, and for a short while.
 */
export type SessionStage = 'full' | 'second-factor' | 'enrol';
export const PENDING_SESSION_TTL_MS = 10 * 60_000;

/** The issuer session a single sign-on session belongs to: the ID token's iss, sub and (when it has one) sid. */
export interface IssuerSession {
  issuer: string;
  subject: string;
  sid?: string;
}

export async function createSession(
  db: Queryable,
  name: string,
  now = new Date(),
  role?: AccountRole,
  stage: SessionStage = 'full',
  issuerSession?: IssuerSession,
): Promise<{ token: string; expiresAt: Date }> {
  const token = randomBytes(32).toString('base64url');
  const expiresAt = new Date(now.getTime() + (stage === 'full' ? SESSION_TTL_MS : PENDING_SESSION_TTL_MS));
  await db.query('DELETE FROM audit_sessions WHERE expires_at < now()');
  await db.query(
    `INSERT INTO audit_sessions (token_hash, user_name, expires_at, role, stage, sso_issuer, sso_subject, sso_sid)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [
      sessionTokenHash(token),
      name,
      expiresAt,
      role ?? null,
      stage,
      issuerSession?.issuer ?? null,
      issuerSession?.subject ?? null,
      issuerSession?.sid ?? null,
    ],
  );
  return { token, expiresAt };
}

export interface SessionState {
  name: string;
  role: AccountRole;
  stage: SessionStage;
  /** Signed in through the issuer: its second factors are the issuer's business. */
  sso: boolean;
}

/** The session behind a cookie at whatever stage it is, or undefined. */
export async function sessionState(db: Queryable, token: string | undefined): Promise<SessionState | undefined> {
  if (!token || !/^[A-Za-z0-9_-]{20,100}$/.test(token)) return undefined;
  const { rows } = await db.query<SessionState>(
    `SELECT s.user_name AS name, COALESCE(s.role, u.role) AS role, s.stage, u.sso
     FROM audit_sessions s JOIN audit_users u ON u.name = s.user_name
     WHERE s.token_hash = $1 AND s.expires_at > now() AND u.disabled_at IS NULL`,
    [sessionTokenHash(token)],
  );
  return rows[0];
}

/** The signed-in account behind a session cookie (any role; `sso` when the issuer signed it in), or undefined; a pending session is not signed in. */
export async function sessionAccount(
  db: Queryable,
  token: string | undefined,
): Promise<{ name: string; role: AccountRole; sso: boolean } | undefined> {
  const state = await sessionState(db, token);
  return state?.stage === 'full' ? { name: state.name, role: state.role, sso: state.sso } : undefined;
}

/** The compliance officer behind a session cookie: the audit page's role only. */
export async function sessionUser(db: Queryable, token: string | undefined): Promise<string | undefined> {
  const account = await sessionAccount(db, token);
  return account?.role === 'compliance' ? account.name : undefined;
}

export async function endSession(db: Queryable, token: string | undefined): Promise<void> {
  if (token) await db.query('DELETE FROM audit_sessions WHERE token_hash = $1', [sessionTokenHash(token)]);
}

/** End every session of an account (its factors were reset). */
export async function endSessionsOf(db: Queryable, name: string): Promise<number> {
  return (await db.query('DELETE FROM audit_sessions WHERE user_name = $1', [name])).rowCount ?? 0;
}

/**
 * End the gateway sessions an issuer's logout names: those of its session
 * `sid` (of that subject too, when the logout names one), or every session of
 * the subject when it names no sid. Returns the accounts whose sessions ended.
 */
export async function endIssuerSessions(
  db: Queryable,
  issuer: string,
  named: { sid?: string; subject?: string },
): Promise<Array<{ name: string; subject: string }>> {
  const { sid, subject } = named;
  // Never both absent: that would name every session of the issuer.
  if (sid === undefined && subject === undefined)
    throw new Error('internal error: an issuer logout names a sid or a subject');
  const match =
    sid === undefined
      ? 'sso_subject = $2'
      : subject === undefined
        ? 'sso_sid = $2'
        : 'sso_sid = $2 AND sso_subject = $3';
  const { rows } = await db.query<{ name: string; subject: string }>(
    `DELETE FROM audit_sessions WHERE sso_issuer = $1 AND ${match} RETURNING user_name AS name, sso_subject AS subject`,
    [issuer, ...(sid === undefined ? [] : [sid]), ...(subject === undefined ? [] : [subject])],
  );
  return rows;
}

/**
 * The account row of a person who signed in through the issuer: created on
 * first sign-in, marked sso, with a password hash no sign-in can match. False
 * when the name is a local account's (an issuer identity never takes one over)
 * or a disabled one.
 */
export async function claimSsoAccount(db: Queryable, name: string): Promise<boolean> {
  await db.query(
    `INSERT INTO audit_users (name, password_hash, role, sso) VALUES ($1, 'sso', 'compliance', true)
     ON CONFLICT DO NOTHING`,
    [name],
  );
  const { rows } = await db.query<{ sso: boolean; disabled: boolean }>(
    'SELECT sso, disabled_at IS NOT NULL AS disabled FROM audit_users WHERE name = $1',
    [name],
  );
  return rows[0]?.sso === true && !rows[0].disabled;
}
