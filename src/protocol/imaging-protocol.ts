import { GatewayError } from '../errors.ts';
import { isJsonJws } from '../jose/pq/dual-jws.ts';
import type { ProtocolVersion } from './v2-acceptance.ts';
import { envelopeVersion } from './v2-negotiation.ts';

/**
 * Which protocol version an imaging delivery is held to (PROTOCOL.md §10.8):
 * its announcement decides, before any bulk is read (compact JWS v1, the
 * dual-signed JSON form v2); the content envelope, the manifest envelope and
 * the manifest's JWS must then be of that version. The rest of the rules
 * (mixed signature forms, downgrades) are those of every message,
 * src/protocol/v2-acceptance.ts.
 */
export const announcementVersion = (jws: string): ProtocolVersion => (isJsonJws(jws) ? 2 : 1);

/** The manifest envelope must be sealed like the announcement is signed: hybrid for v2, ECDH-ES for v1. */
export function requireEnvelopeVersion(version: ProtocolVersion, envelope: string, expression: string): void {
  if (envelopeVersion(envelope) !== version)
    throw new GatewayError(
      'PROTOCOL_MIXED',
      `the manifest envelope is not protocol v${version} like the announcement`,
      {
        expression,
      },
    );
}
