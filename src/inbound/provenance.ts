import type { Provenance } from 'fhir/r4.js';
import { PARTNER_ID_SYSTEM } from '../fhir/message-header.ts';
import { inboxMessagePath } from '../fhir/views.ts';
import type { InboxMetadata } from './inbox-store.ts';

export { inboxMessagePath } from '../fhir/views.ts';

const sendingOrganisation = (m: InboxMetadata) => ({
  type: 'Organization',
  identifier: { system: PARTNER_ID_SYSTEM, value: m.sender },
  display: m.sender,
});

/**
 * Where a received bundle came from, in FHIR terms: the Bundle at
 * /inbox/messages/{id} (target), received at `recorded`, authored by the
 * sending Organization (the partner whose signature verified). With the
 * signed JWS given, Provenance.signature carries it (sigFormat
 * application/jose, base64 of the compact JWS), so the EHR can keep the
 * evidence and check it against the partner's published key.
 */
export function inboxProvenance(
  baseUrl: string,
  m: InboxMetadata,
  signed?: { jws: string; iat: number; contentType: string },
): Provenance {
  const who = sendingOrganisation(m);
  return {
    resourceType: 'Provenance',
    id: m.id,
    target: [{ reference: `${baseUrl}${inboxMessagePath(m.id)}`, type: 'Bundle' }],
    recorded: m.receivedAt.toISOString(),
    activity: {
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: 'CREATE' }],
      text: `received from ${m.sender} (delivery ${m.jti}, exchange ${m.exchangeId}, envelope ${m.envelopeDigest})`,
    },
    agent: [
      {
        type: {
          coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'author' }],
        },
        who,
      },
    ],
    ...(signed
      ? {
          signature: [
            {
              type: [
                { system: 'urn:iso-astm:E1762-95:2013', code: '1.2.840.10065.1.12.1.1', display: "Author's Signature" },
              ],
              when: new Date(signed.iat * 1000).toISOString(),
              who,
              targetFormat: signed.contentType,
              // A protocol v2 message is signed twice, in the JWS JSON serialization (RFC 7515 §9.2).
              sigFormat: signed.jws.startsWith('{') ? 'application/jose+json' : 'application/jose',
              data: Buffer.from(signed.jws, 'ascii').toString('base64'),
            },
          ],
        }
      : {}),
  };
}
