import { GatewayError } from '../errors.ts';
import type { Queryable } from '../db/pool.ts';
import type { DirectoryLogger } from './jwks-fetch.ts';
import { selectVerificationKey, type Jwks, type PartnerJwk } from './jwks.ts';
import { jwkThumbprint, recordedPartnerKey, type PartnerKeySeen } from './partner-key-log.ts';

/**
 * Which of a partner's signing keys may verify a signature. New inbound
 * content needs 'current': a key the partner lists now. A stored item, or a
 * receipt of a delivery we sent, signed at `signedAt` may also use a key the
 * partner withdrew after that moment (the key-transparency log keeps it).
 */
export type KeyScope = 'current' | { signedAt: Date };

/** The payload segment of a JWS, compact or in the JSON serialization (protocol v2), not yet verified. */
function payloadSegment(jws: string): string {
  if (!jws.trimStart().startsWith('{')) return jws.split('.')[1] ?? '';
  const payload: unknown = (JSON.parse(jws) as { payload?: unknown }).payload;
  return typeof payload === 'string' ? payload : '';
}

/**
 * The kid of a signed item's ES256 signature, read before verification: the
 * header of a compact JWS, or of the first signature of the JSON form (the
 * ES256 one, PROTOCOL.md §14.3). Undefined when none can be read.
 */
export function signingKidOf(jws: string): string | undefined {
  try {
    const segment = jws.trimStart().startsWith('{')
      ? (JSON.parse(jws) as { signatures?: Array<{ protected?: unknown }> }).signatures?.[0]?.protected
      : jws.split('.')[0];
    if (typeof segment !== 'string') return undefined;
    const kid: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8')).kid;
    return typeof kid === 'string' ? kid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The scope for re-verifying a signed item: the keys its signer published
 * when the item says it was signed (its iat, read before verification; the
 * signature is still checked). Without a usable iat: current keys only.
 */
export function scopeOfSignedItem(jws: string): KeyScope {
  try {
    const iat: unknown = JSON.parse(Buffer.from(payloadSegment(jws), 'base64url').toString('utf8')).iat;
    if (typeof iat === 'number' && Number.isFinite(iat)) return { signedAt: new Date(iat * 1000) };
  } catch {
    // Not a JWS with a JSON payload: the verification itself will say so.
  }
  return 'current';
}

/** Where the partner's current JWKS comes from. */
export interface CurrentKeys {
  /** Inline, or the cached/fetched copy. */
  jwks(): Promise<Jwks>;
  /** A refetch for a key we cannot use (with the cooldown); undefined when none was made (inline, or too soon). */
  refetch(): Promise<Jwks | undefined>;
  /** The log's records of this kid; `reread` after a refetch, which may have recorded more. */
  records(options: { reread: boolean }): Promise<PartnerKeySeen[]>;
}

const gone = (r: PartnerKeySeen) => r.disappeared_at !== null || r.replaced_at !== null;

/** The log records this key (that content under its kid) as no longer published. */
const withdrawn = (records: PartnerKeySeen[], key: PartnerJwk) => {
  const tp = jwkThumbprint(key);
  return records.some((r) => r.thumbprint === tp && gone(r));
};

/**
 * The partner's signing key with this kid, within `scope`. A key our copy of
 * the JWKS lists but the log records as withdrawn since (another process
 * observed it) counts as withdrawn unless a refetch lists it again.
 */
export async function partnerSigningKey(
  db: Queryable,
  logger: DirectoryLogger,
  partnerId: string,
  kid: string,
  scope: KeyScope,
  current: CurrentKeys,
): Promise<PartnerJwk> {
  let key = selectVerificationKey(await current.jwks(), partnerId, kid);
  let records = await current.records({ reread: false });
  if (!key || withdrawn(records, key)) {
    const fresh = await current.refetch();
    if (fresh) {
      key = selectVerificationKey(fresh, partnerId, kid);
      records = await current.records({ reread: true });
    }
  }
  if (key && !withdrawn(records, key)) return key;
  if (scope !== 'current') {
    const recorded = await recordedPartnerKey(db, partnerId, kid, scope.signedAt);
    const past = recorded && selectVerificationKey({ keys: [{ ...recorded, kid }] }, partnerId, kid);
    if (past) return past;
  }
  if (key ? withdrawn(records, key) : records.length > 0 && records.every(gone)) {
    // A key the partner published and no longer does: new content signed with it may be a stolen key at work.
    logger.warn({ partner: partnerId, kid }, 'signature by a withdrawn partner signing key');
    throw new GatewayError('JWS_KEY_WITHDRAWN', `partner ${partnerId} has withdrawn signing key ${kid}`);
  }
  logger.warn({ partner: partnerId, kid }, 'unknown signing key id');
  throw new GatewayError('FORBIDDEN', `partner ${partnerId} publishes no signing key with kid ${kid}`);
}
