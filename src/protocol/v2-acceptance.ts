import { GatewayError } from '../errors.ts';
import { isJsonJws } from '../jose/pq/dual-jws.ts';
import { pqKeysOf } from './v2-negotiation.ts';

/**
 * Which protocol version a received message (or a receipt for one of our
 * deliveries) is held to, in one place (docs/PROTOCOL.md §14.3, §14.4):
 * v2 is a hybrid envelope AND a dual-signed JWS together; either half alone
 * is a mixed form, refused. A v1 message from a sender that publishes an
 * ML-DSA-65 key, to this gateway that publishes its post-quantum keys, is a
 * downgrade and refused; a sender without one keeps v1.
 */
export type ProtocolVersion = 1 | 2;

/** A JWS in the JSON serialization (it names its signatures), as opposed to any other JSON or a compact JWS. */
function isJsonSerialized(text: string): boolean {
  if (!isJsonJws(text)) return false;
  try {
    const doc: unknown = JSON.parse(text);
    return !!doc && typeof doc === 'object' && ('signatures' in doc || 'signature' in doc);
  } catch {
    return false;
  }
}

/**
 * The signature form must be the envelope's: compact JWS in a v1 envelope,
 * the dual JSON form in a v2 one. Text that is neither is left to the
 * verifier of the envelope's version, which refuses it as JWS_MALFORMED.
 */
export function requireSignatureForm(version: ProtocolVersion, jws: string, what: string): void {
  if (version === 2 && !isJsonJws(jws))
    throw new GatewayError(
      'PROTOCOL_MIXED',
      `a protocol v2 ${what} must be signed twice, as a JWS in the JSON serialization (PROTOCOL.md §14.3)`,
    );
  if (version === 1 && isJsonSerialized(jws))
    throw new GatewayError(
      'PROTOCOL_MIXED',
      `a dual-signed JWS is protocol v2 and needs a v2 (hybrid) envelope; this ${what} is v1 (PROTOCOL.md §14.3)`,
    );
}

interface JwkLike {
  kty?: unknown;
  alg?: unknown;
  use?: unknown;
}

/** Whether a JWKS lists an ML-DSA-65 signing key (an AKP key not marked for encryption). */
export const publishesPqSignatures = (keys: readonly JwkLike[]): boolean =>
  keys.some((k) => k.kty === 'AKP' && k.alg === 'ML-DSA-65' && (k.use === undefined || k.use === 'sig'));

/**
 * Refuse a v1 message from a sender that signs with ML-DSA-65 while this
 * gateway publishes both post-quantum keys: the sender could have used v2,
 * so a v1 envelope from it may be a downgrade by someone holding only its
 * classical key.
 */
export function refuseDowngrade(
  version: ProtocolVersion,
  sender: { id: string; keys: readonly JwkLike[] },
  ours: readonly JwkLike[],
): void {
  if (version === 2 || !publishesPqSignatures(sender.keys) || !pqKeysOf(ours)) return;
  throw new GatewayError(
    'PROTOCOL_DOWNGRADE',
    `sender ${sender.id} publishes an ML-DSA-65 key and this gateway its post-quantum keys: ` +
      'protocol v1 from it is refused as a downgrade; send protocol v2 (PROTOCOL.md §14.4)',
  );
}

/**
 * The receipt for one of our deliveries must be of the delivery's version: a
 * v2 delivery needs a dual-signed receipt (a compact one is a downgrade), a
 * v1 delivery a compact one.
 */
export function requireReceiptForm(delivered: ProtocolVersion, receipt: string): void {
  if (delivered === 2 && !isJsonJws(receipt))
    throw new GatewayError(
      'PROTOCOL_DOWNGRADE',
      'the delivery was protocol v2 but the receipt is a compact (v1) JWS; a v2 receipt is dual-signed (PROTOCOL.md §14.4)',
    );
  if (delivered === 1 && isJsonSerialized(receipt))
    throw new GatewayError('PROTOCOL_MIXED', 'the delivery was protocol v1 but the receipt is dual-signed (v2)');
}
