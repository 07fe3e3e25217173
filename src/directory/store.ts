import type { Queryable } from '../db/pool.ts';
import type { Jwks } from './jwks.ts';
import { required } from '../required.ts';

export type PartnerStatus = 'active' | 'suspended';

/** A decision about a partner that stopped publishing its post-quantum keys (null: none needed). */
export type PqDowngrade = 'held' | 'allow-v1' | null;

/**
 * A suspended partner is sent nothing (src/outbound/partner-suspension.ts):
 * its deliveries, and the processed receipts owed to it, wait with no attempt spent.
 */
export const holdsDeliveries = (p: Pick<Partner, 'status'>): boolean => p.status === 'suspended';

/** A partner organisation: FHIR Organization (id, name, status) + its Endpoint (inbox, keys). */
export interface Partner {
  id: string;
  name: string;
  endpoint: string;
  jwksUri: string | null;
  jwks: Jwks | null;
  status: PartnerStatus;
  /** Held or allowed after it stopped publishing its post-quantum keys (src/outbound/partner-suspension.ts). */
  pqDowngrade: PqDowngrade;
  /** The identifier its EHRs use for it (MessageHeader receiver/sender), if registered. */
  identifier?: { system: string; value: string } | undefined;
  createdAt: Date;
  updatedAt: Date;
}

interface Row {
  id: string;
  name: string;
  endpoint: string;
  jwks_uri: string | null;
  jwks: Jwks | null;
  status: PartnerStatus;
  pq_downgrade: PqDowngrade;
  identifier_system: string | null;
  identifier_value: string | null;
  created_at: Date;
  updated_at: Date;
}

const toPartner = (r: Row): Partner => ({
  id: r.id,
  name: r.name,
  endpoint: r.endpoint,
  jwksUri: r.jwks_uri,
  jwks: r.jwks,
  status: r.status,
  pqDowngrade: r.pq_downgrade ?? null,
  ...(r.identifier_system !== null && r.identifier_value !== null
    ? { identifier: { system: r.identifier_system, value: r.identifier_value } }
    : {}),
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export type PartnerFields = Pick<Partner, 'id' | 'name' | 'endpoint' | 'jwksUri' | 'jwks' | 'status' | 'identifier'>;

const fieldValues = (p: PartnerFields) => [
  p.id,
  p.name,
  p.endpoint,
  p.jwksUri,
  p.jwks ? JSON.stringify(p.jwks) : null,
  p.status,
  p.identifier?.system ?? null,
  p.identifier?.value ?? null,
];

export async function insertPartner(db: Queryable, p: PartnerFields): Promise<Partner> {
  const { rows } = await db.query<Row>(
    `INSERT INTO partners (id, name, endpoint, jwks_uri, jwks, status, identifier_system, identifier_value)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *`,
    [...fieldValues(p)],
  );
  return toPartner(required(rows[0], 'the row INSERT ... RETURNING wrote'));
}

export async function updatePartner(db: Queryable, p: PartnerFields): Promise<Partner | undefined> {
  const { rows } = await db.query<Row>(
    `UPDATE partners SET name = $2, endpoint = $3, jwks_uri = $4, jwks = $5, status = $6,
            identifier_system = $7, identifier_value = $8, updated_at = now() WHERE id = $1 RETURNING *`,
    [...fieldValues(p)],
  );
  return rows[0] ? toPartner(rows[0]) : undefined;
}

export async function deletePartner(db: Queryable, id: string): Promise<boolean> {
  const { rowCount } = await db.query('DELETE FROM partners WHERE id = $1', [id]);
  return (rowCount ?? 0) > 0;
}

export async function findPartner(db: Queryable, id: string): Promise<Partner | undefined> {
  const { rows } = await db.query<Row>('SELECT * FROM partners WHERE id = $1', [id]);
  return rows[0] ? toPartner(rows[0]) : undefined;
}

/** Partners whose id or inbox URL is one of `refs`, or whose registered identifier is one of `identifiers` (MessageHeader.destination matching). */
export async function findPartnersByIdOrEndpoint(
  db: Queryable,
  refs: string[],
  identifiers: ReadonlyArray<{ system: string; value: string }> = [],
): Promise<Partner[]> {
  const { rows } = await db.query<Row>(
    `SELECT * FROM partners WHERE id = ANY($1) OR endpoint = ANY($1)
        OR (identifier_system, identifier_value) IN (SELECT * FROM unnest($2::text[], $3::text[]))`,
    [refs, identifiers.map((i) => i.system), identifiers.map((i) => i.value)],
  );
  return rows.map(toPartner);
}

/** Partners whose keys are published at this JWKS URI. */
export async function findPartnersByJwksUri(db: Queryable, uri: string): Promise<Partner[]> {
  const { rows } = await db.query<Row>('SELECT * FROM partners WHERE jwks_uri = $1', [uri]);
  return rows.map(toPartner);
}

export async function listPartners(db: Queryable): Promise<Partner[]> {
  const { rows } = await db.query<Row>('SELECT * FROM partners ORDER BY id');
  return rows.map(toPartner);
}

/** Set a partner's status; false when there is no such partner. */
export async function setPartnerStatus(db: Queryable, id: string, status: PartnerStatus): Promise<boolean> {
  const { rowCount } = await db.query('UPDATE partners SET status = $2, updated_at = now() WHERE id = $1', [
    id,
    status,
  ]);
  return (rowCount ?? 0) > 0;
}

/** Record a downgrade decision; the previous one, or undefined when there is no such partner. */
export async function setPqDowngrade(
  db: Queryable,
  id: string,
  decision: PqDowngrade,
): Promise<PqDowngrade | undefined> {
  const { rows } = await db.query<{ before: PqDowngrade }>(
    `UPDATE partners p SET pq_downgrade = $2, updated_at = now()
       FROM (SELECT id, pq_downgrade AS before FROM partners WHERE id = $1 FOR UPDATE) o
      WHERE p.id = o.id RETURNING o.before`,
    [id, decision],
  );
  return rows[0] ? rows[0].before : undefined;
}
