import { fromB64u } from '../jose/base64url.ts';
import { HYBRID_ALG } from '../jose/pq/hybrid-jwe.ts';
import type { AkpPublicJwk } from '../keys/pq-keys.ts';

/**
 * Which protocol version a delivery to one partner uses. v2 exactly when the
 * partner's JWKS publishes both post-quantum keys; a partner once seen with
 * them whose set no longer has them is held for an operator (or sent v1 if
 * the configured policy allows it), never silently downgraded.
 */
export type DowngradePolicy = 'hold' | 'allow-v1';

export type Negotiated =
  | { version: 2; kem: AkpPublicJwk; sig: AkpPublicJwk }
  | { version: 1; downgraded: boolean }
  | { version: 'held'; reason: string };

interface JwkLike {
  kty?: unknown;
  alg?: unknown;
  use?: unknown;
  pub?: unknown;
  kid?: unknown;
}

const isAkp = (k: JwkLike, alg: string, use: string): k is JwkLike & { pub: string; kid: string } =>
  k.kty === 'AKP' &&
  k.alg === alg &&
  (k.use === undefined || k.use === use) &&
  typeof k.pub === 'string' &&
  typeof k.kid === 'string';

/** The partner's current ML-KEM-768 and ML-DSA-65 keys (the first of each in document order), if it publishes both. */
export function pqKeysOf(keys: readonly JwkLike[]): { kem: AkpPublicJwk; sig: AkpPublicJwk } | undefined {
  const kem = keys.find((k) => isAkp(k, 'ML-KEM-768', 'enc'));
  const sig = keys.find((k) => isAkp(k, 'ML-DSA-65', 'sig'));
  if (!kem || !sig) return undefined;
  return {
    kem: { kty: 'AKP', alg: 'ML-KEM-768', pub: kem.pub as string, kid: kem.kid as string, use: 'enc' },
    sig: { kty: 'AKP', alg: 'ML-DSA-65', pub: sig.pub as string, kid: sig.kid as string, use: 'sig' },
  };
}

/**
 * `wasPq`: the key-transparency log has recorded this partner publishing
 * post-quantum keys. `operatorAllowsV1`: an operator has decided (audited)
 * that deliveries to it may go as v1 until its keys return.
 */
export function negotiate(
  keys: readonly JwkLike[],
  state: { wasPq: boolean; operatorAllowsV1: boolean },
  policy: DowngradePolicy,
): Negotiated {
  const pq = pqKeysOf(keys);
  if (pq) return { version: 2, ...pq };
  if (!state.wasPq) return { version: 1, downgraded: false };
  if (policy === 'allow-v1' || state.operatorAllowsV1) return { version: 1, downgraded: true };
  return {
    version: 'held',
    reason: 'the partner no longer publishes its post-quantum keys; an operator must allow v1 or wait for them',
  };
}

/** Longer than any header this protocol writes (a v2 header is about 2.3 KB): a longer one is not decoded here. */
const MAX_HEADER_CHARS = 16 * 1024;

/**
 * The version a compact envelope asks for: 2 when its protected header asks for the hybrid agreement.
 * Read before anything is trusted, so only a bounded header is decoded; anything else is v1, whose
 * opener refuses it with the precise reason.
 */
export function envelopeVersion(compactJwe: string): 1 | 2 {
  const dot = compactJwe.indexOf('.');
  if (dot <= 0 || dot > MAX_HEADER_CHARS) return 1;
  try {
    const header = JSON.parse(fromB64u(compactJwe.slice(0, dot)).toString('utf8')) as {
      alg?: unknown;
    };
    return header.alg === HYBRID_ALG ? 2 : 1;
  } catch {
    return 1;
  }
}

/** A v1 delivery to a partner held after losing its post-quantum keys waits for an operator; v2 ones do not. */
export const heldForDowngrade = (partner: { pqDowngrade: string | null }, version: 1 | 2): boolean =>
  partner.pqDowngrade === 'held' && version === 1;
