import type { JWK } from 'jose';
import type { Queryable } from '../db/pool.ts';
import { GatewayError } from '../errors.ts';
import { isValidScope } from './scopes.ts';
import { revokeClientTokens } from './tokens.ts';
import { isPlainIdentifier } from '../ids.ts';
import { checkPurposeOfUse } from '../fhir/purpose-of-use.ts';

/** A registered SMART Backend Services client. Public keys only. */
export interface ClientRecord {
  id: string;
  name: string;
  jwks: { keys: JWK[] } | null;
  jwksUri: string | null;
  scopes: string[];
  enabled: boolean;
  rateLimit: number | null;
  /** Partner ids whose received inbox messages this client may see; '*' = every partner; [] = none. */
  receivesFrom: string[];
  /** The purpose of use its submissions carry when they state none ([] = none registered: TREAT). */
  purposeOfUse: string[];
  createdAt: Date;
  disabledAt: Date | null;
}

export interface NewClient {
  id: string;
  name?: string;
  jwks?: unknown;
  jwksUri?: string;
  scopes: string[];
  rateLimit?: number | null;
  receivesFrom?: string[];
  purposeOfUse?: unknown;
}

const CLIENT_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,199}$/;
/** Partner ids are printable ASCII (src/directory/directory.ts); '*' stands for every partner. */
const PARTNER_ID_RE = /^[\x21-\x7e]{1,256}$/;
export const EVERY_PARTNER = '*';
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth'];

interface Row {
  id: string;
  name: string;
  jwks: { keys: JWK[] } | null;
  jwks_uri: string | null;
  scopes: string[];
  enabled: boolean;
  rate_limit: number | null;
  receives_from: string[];
  purpose_of_use: string[];
  created_at: Date;
  disabled_at: Date | null;
}

const toRecord = (r: Row): ClientRecord => ({
  id: r.id,
  name: r.name,
  jwks: r.jwks,
  jwksUri: r.jwks_uri,
  scopes: r.scopes,
  enabled: r.enabled,
  rateLimit: r.rate_limit,
  receivesFrom: r.receives_from,
  purposeOfUse: r.purpose_of_use,
  createdAt: r.created_at,
  disabledAt: r.disabled_at,
});

/** A public JWKS with kids: private members are refused, so a leaked row can never sign. */
export function checkPublicJwks(jwks: unknown): { keys: JWK[] } {
  const keys = (jwks as { keys?: unknown })?.keys;
  if (!Array.isArray(keys) || keys.length === 0 || keys.length > 20)
    throw new GatewayError('INVALID_VALUE', 'jwks must be {"keys":[...]} with 1 to 20 public keys', {
      expression: 'jwks',
    });
  keys.forEach((k: Record<string, unknown>, i) => {
    if (!k || typeof k !== 'object' || !['EC', 'RSA'].includes(k.kty as string))
      throw new GatewayError('INVALID_VALUE', `jwks.keys[${i}]: kty must be EC or RSA`, {
        expression: `jwks.keys[${i}]`,
      });
    if (typeof k.kid !== 'string' || k.kid === '')
      throw new GatewayError('INVALID_VALUE', `jwks.keys[${i}]: a kid is required`, {
        expression: `jwks.keys[${i}].kid`,
      });
    if (PRIVATE_MEMBERS.some((m) => m in k))
      throw new GatewayError(
        'INVALID_VALUE',
        `jwks.keys[${i}] holds private key material; register the public key only`,
        { expression: `jwks.keys[${i}]` },
      );
  });
  return { keys: keys as JWK[] };
}

/** https, or http on loopback only (development and tests). */
export function checkJwksUri(uri: string): string {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw new GatewayError('INVALID_VALUE', 'jwks_uri is not a URL', { expression: 'jwks_uri' });
  }
  const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(u.hostname);
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && loopback))
    throw new GatewayError('INVALID_VALUE', 'jwks_uri must be https (http only on loopback)', {
      expression: 'jwks_uri',
    });
  return u.toString();
}

/**
 * The inbox routing list: partner ids (not required to be in the directory
 * yet, so a client can be prepared before its partner), or just '*'.
 * Sorted and deduplicated; [] means the client receives nothing.
 */
export function checkReceivesFrom(list: unknown): string[] {
  if (!Array.isArray(list) || list.length > 1000)
    throw new GatewayError('INVALID_VALUE', 'receives_from must be a list of up to 1000 partner ids', {
      expression: 'receives_from',
    });
  const bad = list.filter((p) => typeof p !== 'string' || !PARTNER_ID_RE.test(p));
  if (bad.length)
    throw new GatewayError('INVALID_VALUE', 'receives_from: each entry is a partner id (printable ASCII) or *', {
      expression: 'receives_from',
    });
  const ids = [...new Set(list as string[])].sort();
  if (ids.includes(EVERY_PARTNER) && ids.length > 1)
    throw new GatewayError('INVALID_VALUE', 'receives_from: * already means every partner; give it alone', {
      expression: 'receives_from',
    });
  return ids;
}

/** A client's default purpose of use: codes of the HL7 PurposeOfUse value set; [] registers none. */
export function checkClientPurposeOfUse(list: unknown): string[] {
  if (Array.isArray(list) && list.length === 0) return [];
  return checkPurposeOfUse(list, { expression: 'purpose_of_use', code: 'INVALID_VALUE' });
}

export function checkNewClient(c: NewClient): NewClient & { purposeOfUse: string[] } {
  if (typeof c.id !== 'string' || !CLIENT_ID_RE.test(c.id))
    throw new GatewayError('INVALID_VALUE', 'client id: 1-200 characters of letters, digits and ._:@/-', {
      expression: 'id',
    });
  if (c.name !== undefined && !isPlainIdentifier(c.name))
    throw new GatewayError('INVALID_VALUE', 'name: 1 to 2048 characters without control characters', {
      expression: 'name',
    });
  if ((c.jwks === undefined) === (c.jwksUri === undefined))
    throw new GatewayError('INVALID_VALUE', 'give exactly one of jwks and jwks_uri', { expression: 'jwks' });
  if (!Array.isArray(c.scopes) || c.scopes.length === 0)
    throw new GatewayError('INVALID_VALUE', 'at least one scope is required', { expression: 'scopes' });
  const bad = c.scopes.filter((s) => typeof s !== 'string' || !isValidScope(s));
  if (bad.length)
    throw new GatewayError('INVALID_VALUE', `not a system scope: ${bad.join(', ')}`, { expression: 'scopes' });
  if (c.rateLimit != null && (!Number.isInteger(c.rateLimit) || c.rateLimit < 0))
    throw new GatewayError('INVALID_VALUE', 'rate_limit must be a whole number >= 0', { expression: 'rate_limit' });
  return {
    ...c,
    name: c.name ?? c.id,
    jwks: c.jwks === undefined ? undefined : checkPublicJwks(c.jwks),
    jwksUri: c.jwksUri === undefined ? undefined : checkJwksUri(c.jwksUri),
    receivesFrom: checkReceivesFrom(c.receivesFrom ?? []),
    purposeOfUse: checkClientPurposeOfUse(c.purposeOfUse ?? []),
  };
}

export async function registerClient(db: Queryable, input: NewClient): Promise<ClientRecord> {
  const c = checkNewClient(input);
  const { rows } = await db.query<Row>(
    `INSERT INTO auth_clients (id, name, jwks, jwks_uri, scopes, rate_limit, receives_from, purpose_of_use) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (id) DO NOTHING RETURNING *`,
    [
      c.id,
      c.name,
      c.jwks === undefined ? null : JSON.stringify(c.jwks),
      c.jwksUri ?? null,
      [...new Set(c.scopes)],
      c.rateLimit ?? null,
      c.receivesFrom,
      c.purposeOfUse,
    ],
  );
  if (!rows[0]) throw new GatewayError('CONFLICT', `client ${c.id} already exists`, { expression: 'id' });
  return toRecord(rows[0]);
}

export async function getClient(db: Queryable, id: string): Promise<ClientRecord | undefined> {
  if (!isPlainIdentifier(id)) return undefined;
  const { rows } = await db.query<Row>('SELECT * FROM auth_clients WHERE id = $1', [id]);
  return rows[0] ? toRecord(rows[0]) : undefined;
}

export async function listClients(db: Queryable): Promise<ClientRecord[]> {
  const { rows } = await db.query<Row>('SELECT * FROM auth_clients ORDER BY id');
  return rows.map(toRecord);
}

/** Enable or disable; disabling also deletes the client's live tokens. Returns false if no such client. */
export async function setClientEnabled(db: Queryable, id: string, enabled: boolean): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE auth_clients SET enabled = $2, updated_at = now(), disabled_at = CASE WHEN $2 THEN NULL ELSE now() END WHERE id = $1`,
    [id, enabled],
  );
  if (!rowCount) return false;
  if (!enabled) await revokeClientTokens(db, id);
  return true;
}

/** What a client registration's audit entries say of it: its settings, never its keys. */
export const clientSettingsDetail = (c: ClientRecord) => ({
  receives_from: c.receivesFrom.join(' '),
  purpose_of_use: c.purposeOfUse.join(' '),
});

/** The settings of a registered client that may change: each given one replaces the old value. */
export interface ClientSettings {
  receivesFrom?: unknown;
  purposeOfUse?: unknown;
}

/**
 * Replace a client's inbox routing list and/or default purpose of use
 * (checked as in checkReceivesFrom and checkClientPurposeOfUse). Returns
 * undefined if no such client.
 */
export async function updateClientSettings(
  db: Queryable,
  id: string,
  s: ClientSettings,
): Promise<ClientRecord | undefined> {
  const receivesFrom = s.receivesFrom === undefined ? null : checkReceivesFrom(s.receivesFrom);
  const purposeOfUse = s.purposeOfUse === undefined ? null : checkClientPurposeOfUse(s.purposeOfUse);
  const { rows } = await db.query<Row>(
    `UPDATE auth_clients SET receives_from = coalesce($2, receives_from), purpose_of_use = coalesce($3, purpose_of_use),
            updated_at = now() WHERE id = $1 RETURNING *`,
    [id, receivesFrom, purposeOfUse],
  );
  return rows[0] ? toRecord(rows[0]) : undefined;
}
