import { GatewayError } from '../errors.ts';
import { isJsonJws } from '../jose/pq/dual-jws.ts';
import { envelopeVersion } from './v2-negotiation.ts';

/**
 * Which protocol version an imaging delivery is held to (PROTOCOL.md §10.8).
 * The announcement decides, before any bulk is read: compact JWS is v1, the
 * dual-signed JSON form is v2. The content envelope, the manifest envelope and
 * the manifest's JWS must then all be of that version (a mixed delivery is
 * refused), and a v1 delivery from a sender that signs with ML-DSA-65, to
 * this gateway while it asks for v2, is refused as a downgrade.
 */
export type ProtocolVersion = 1 | 2;

export const signatureVersion = (jws: string): ProtocolVersion => (isJsonJws(jws) ? 2 : 1);

const mixed = (message: string, expression: string) => new GatewayError('PROTOCOL_MIXED', message, { expression });

/** The manifest envelope must be sealed like the announcement is signed: hybrid for v2, ECDH-ES for v1. */
export function requireEnvelopeVersion(version: ProtocolVersion, envelope: string, expression: string): void {
  if (envelopeVersion(envelope) !== version)
    throw mixed(`the manifest envelope is not protocol v${version} like the announcement`, expression);
}

/** The manifest's signature form must be its envelope's: dual JSON in v2, compact in v1. */
export function requireSignatureVersion(version: ProtocolVersion, jws: string, expression: string): void {
  if (signatureVersion(jws) !== version)
    throw mixed(
      version === 2
        ? 'a protocol v2 manifest is signed twice, as a JWS in the JSON serialization (PROTOCOL.md §14.3)'
        : 'a dual-signed manifest is protocol v2 and needs a v2 (hybrid) envelope',
      expression,
    );
}

interface JwkLike {
  kty?: unknown;
  alg?: unknown;
  use?: unknown;
}

/** Whether a JWKS lists an ML-DSA-65 signing key. */
export const publishesPqSignatures = (keys: readonly JwkLike[]): boolean =>
  keys.some((k) => k.kty === 'AKP' && k.alg === 'ML-DSA-65' && (k.use === undefined || k.use === 'sig'));

/**
 * A v1 delivery from a sender that publishes an ML-DSA-65 key, while we
 * publish ours (PROTOCOL_V2=on): it could have sent v2, so v1 from it may be
 * someone holding only its classical key.
 */
export function refuseDowngrade(
  version: ProtocolVersion,
  sender: { id: string; keys: readonly JwkLike[] },
  weAskForV2: boolean,
): void {
  if (version === 2 || !weAskForV2 || !publishesPqSignatures(sender.keys)) return;
  throw new GatewayError(
    'PROTOCOL_DOWNGRADE',
    `sender ${sender.id} publishes an ML-DSA-65 key and this gateway its post-quantum keys: ` +
      'a protocol v1 imaging delivery from it is refused as a downgrade; send protocol v2 (PROTOCOL.md §14.4)',
    { expression: 'part[0]' },
  );
}
