import { createHash } from 'node:crypto';
import type pg from 'pg';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import type { AuditEventType } from '../audit/events.ts';
import { inTransaction } from '../db/pool.ts';
import type { Jwks, PartnerJwk } from './jwks.ts';
import type { Queryable } from '../db/pool.ts';

export interface PartnerKeySeen {
  partner_id: string;
  kid: string;
  thumbprint: string;
  use: string | null;
  jwk: PartnerJwk;
  first_seen: Date;
  last_seen: Date;
  disappeared_at: Date | null;
  replaced_at: Date | null;
}

/** RFC 7638 thumbprint of a partner's public JWK (EC, RSA, OKP or RFC 9964 AKP), to tell content changes under one kid. */
export function jwkThumbprint(k: PartnerJwk): string {
  const required: Record<string, string[]> = {
    EC: ['crv', 'kty', 'x', 'y'],
    RSA: ['e', 'kty', 'n'],
    OKP: ['crv', 'kty', 'x'],
    AKP: ['alg', 'kty', 'pub'],
  };
  const members =
    required[k.kty] ??
    Object.keys(k)
      .filter((m) => m !== 'kid')
      .sort();
  return createHash('sha256')
    .update(JSON.stringify(Object.fromEntries(members.map((m) => [m, k[m]]))))
    .digest('base64url');
}

/** Keep only public, descriptive members (the fetcher already refused private ones). */
const publicJwk = (k: PartnerJwk): PartnerJwk => {
  const { d: _d, ...rest } = k;
  return rest;
};

export interface ObservationResult {
  firstSeen: string[];
  changed: string[];
  disappeared: string[];
}

/** Advisory lock space of partner key observations (one slot per partner id hash). */
const OBSERVATION_LOCK = 7_273_060;

/** In the caller's transaction when given one (a directory change commits with what it shows of the keys), else in a new one. */
const transaction = <T>(db: pg.Pool | pg.PoolClient, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> =>
  'release' in db ? fn(db) : inTransaction(db, fn);

/**
 * Record one observation of a partner's JWKS in the key-transparency log:
 * new kids are first-seen, known ones get last_seen, a kid whose content
 * differs from what it carried before is a change, and a recorded kid no
 * longer listed has disappeared. Changes are audited in the same transaction.
 * Keys without a kid cannot be referenced by signatures and are not recorded.
 */
export async function observePartnerKeys(
  pool: pg.Pool | pg.PoolClient,
  partnerId: string,
  jwks: Jwks,
  now = new Date(),
): Promise<ObservationResult> {
  const out: ObservationResult = { firstSeen: [], changed: [], disappeared: [] };
  await transaction(pool, async (db) => {
    // One observation of a partner at a time (FOR UPDATE alone does not serialise two first sightings).
    await db.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [OBSERVATION_LOCK, partnerId]);
    const { rows } = await db.query<PartnerKeySeen>(
      'SELECT * FROM partner_keys_seen WHERE partner_id = $1 FOR UPDATE',
      [partnerId],
    );
    const events: AuditInput[] = [];
    const event = (type: AuditEventType, kid: string, detail: AuditInput['detail'] = {}): AuditInput => ({
      type,
      outcome: type === 'partner-key.first-seen' ? 'success' : 'minor-failure',
      agent: { type: 'partner', id: partnerId },
      entity: [{ type: 'partner-key', id: kid }],
      detail,
    });
    const listed = new Set<string>();
    for (const k of jwks.keys) {
      if (typeof k.kid !== 'string' || k.kid === '') continue;
      const tp = jwkThumbprint(k);
      listed.add(`${k.kid} ${tp}`);
      const same = rows.find((r) => r.kid === k.kid && r.thumbprint === tp);
      if (same) {
        await db.query(
          'UPDATE partner_keys_seen SET last_seen = $4, disappeared_at = NULL, replaced_at = NULL WHERE partner_id = $1 AND kid = $2 AND thumbprint = $3',
          [partnerId, k.kid, tp, now],
        );
        continue;
      }
      const previous = rows.filter((r) => r.kid === k.kid && r.replaced_at === null);
      await db.query(
        'INSERT INTO partner_keys_seen (partner_id, kid, thumbprint, use, jwk, first_seen, last_seen) VALUES ($1, $2, $3, $4, $5, $6, $6)',
        [partnerId, k.kid, tp, typeof k.use === 'string' ? k.use : null, JSON.stringify(publicJwk(k)), now],
      );
      const [replaced] = previous;
      if (replaced) {
        await db.query(
          'UPDATE partner_keys_seen SET replaced_at = $4 WHERE partner_id = $1 AND kid = $2 AND thumbprint <> $3 AND replaced_at IS NULL',
          [partnerId, k.kid, tp, now],
        );
        out.changed.push(k.kid);
        events.push(event('partner-key.changed', k.kid, { thumbprint: tp, previous: replaced.thumbprint }));
      } else {
        out.firstSeen.push(k.kid);
        events.push(
          event('partner-key.first-seen', k.kid, { thumbprint: tp, use: typeof k.use === 'string' ? k.use : null }),
        );
      }
    }
    for (const r of rows) {
      // A kid now carrying other content was replaced (audited as changed), not gone.
      if (listed.has(`${r.kid} ${r.thumbprint}`) || r.disappeared_at || r.replaced_at || out.changed.includes(r.kid))
        continue;
      await db.query(
        'UPDATE partner_keys_seen SET disappeared_at = $4 WHERE partner_id = $1 AND kid = $2 AND thumbprint = $3',
        [partnerId, r.kid, r.thumbprint, now],
      );
      out.disappeared.push(r.kid);
      events.push(
        event('partner-key.disappeared', r.kid, { thumbprint: r.thumbprint, last_seen: r.last_seen.toISOString() }),
      );
    }
    await appendAudit(db, events, now);
  });
  return out;
}

/** Every content the log holds under this kid of the partner (more than one if the kid was reused). */
export async function partnerKeyRecords(db: Queryable, partnerId: string, kid: string): Promise<PartnerKeySeen[]> {
  const { rows } = await db.query<PartnerKeySeen>(
    'SELECT * FROM partner_keys_seen WHERE partner_id = $1 AND kid = $2',
    [partnerId, kid],
  );
  return rows;
}

export async function partnerKeyLog(db: Queryable, partnerId?: string): Promise<PartnerKeySeen[]> {
  const { rows } = await db.query<PartnerKeySeen>(
    'SELECT * FROM partner_keys_seen WHERE $1::text IS NULL OR partner_id = $1 ORDER BY partner_id, first_seen, kid',
    [partnerId ?? null],
  );
  return rows;
}

/**
 * The signing key a partner published under this kid, from the log. A kid
 * whose content changed is ambiguous and never answered. `notGoneBefore`
 * bounds how long ago the key may have disappeared (undefined: any time,
 * for re-verifying stored receipts and audit exports).
 */
export async function recordedPartnerKey(
  db: Queryable,
  partnerId: string,
  kid: string,
  notGoneBefore?: Date,
): Promise<PartnerJwk | undefined> {
  const { rows } = await db.query<PartnerKeySeen>(
    'SELECT * FROM partner_keys_seen WHERE partner_id = $1 AND kid = $2',
    [partnerId, kid],
  );
  const [r] = rows;
  if (rows.length !== 1 || !r) return undefined;
  if (r.use !== null && r.use !== 'sig') return undefined;
  if (notGoneBefore && r.disappeared_at && r.disappeared_at < notGoneBefore) return undefined;
  return r.jwk;
}

/**
 * The partner's post-quantum capability as the log recorded it: whether it
 * was ever seen publishing both an ML-KEM-768 and an ML-DSA-65 key (so a set
 * without them now is a downgrade, not a v1 partner).
 */
export async function partnerWasPq(db: Queryable, partnerId: string): Promise<boolean> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(DISTINCT jwk->>'alg')::int AS n FROM partner_keys_seen
      WHERE partner_id = $1 AND jwk->>'kty' = 'AKP' AND jwk->>'alg' IN ('ML-KEM-768', 'ML-DSA-65')`,
    [partnerId],
  );
  return (rows[0]?.n ?? 0) === 2;
}

/** Whether this partner was ever seen publishing a post-quantum (RFC 9964 AKP) key. */
export async function everPublishedPqKeys(db: Queryable, partnerId: string): Promise<boolean> {
  const { rows } = await db.query(
    "SELECT 1 FROM partner_keys_seen WHERE partner_id = $1 AND jwk->>'kty' = 'AKP' LIMIT 1",
    [partnerId],
  );
  return rows.length > 0;
}
