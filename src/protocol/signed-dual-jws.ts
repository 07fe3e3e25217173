import { GatewayError } from '../errors.ts';
import { fromB64u } from '../jose/base64url.ts';
import { PQ_SIGNATURE_ALG, verifyDual } from '../jose/pq/dual-jws.ts';
import { importPublicJwk } from '../jose/public-key.ts';
import type { PartnerJwk } from '../directory/directory.ts';
import {
  activeSender,
  parseClaims,
  publicKeyOf,
  publishedKey,
  type SignedJwsChecks,
  type VerifiedJwsSender,
} from './signed-jws.ts';

/** A protocol v2 signed JWS verified: the ES256 half as in v1, and the ML-DSA-65 half by its own published key. */
export interface VerifiedDualSender extends VerifiedJwsSender {
  senderPqKid: string;
  senderPqJwk: PartnerJwk;
}

/** The payload text of a JSON-serialized JWS, read before verification: it only names the sender whose keys to try. */
function unverifiedPayload(text: string, c: Pick<SignedJwsChecks, 'what' | 'expression'>): string {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    doc = undefined;
  }
  const payload = (doc as { payload?: unknown } | undefined)?.payload;
  if (typeof payload !== 'string')
    throw new GatewayError('JWS_MALFORMED', `${c.what} does not hold a JWS in the JSON serialization`, {
      expression: c.expression,
    });
  return fromB64u(payload).toString('utf8');
}

const refused = (message: string) => new GatewayError('JWS_SIGNATURE_INVALID', message);

/**
 * Verify a partner's dual-signed JWS (PROTOCOL.md §14.3): exactly an ES256
 * and an ML-DSA-65 signature over one payload with one typ, each by a key
 * the active sender publishes now under the kid its header names; both must
 * verify. The same directory lookup (scope, refetch, withdrawal) as v1.
 */
export async function verifySignedDualJws(text: string, c: SignedJwsChecks): Promise<VerifiedDualSender> {
  const payloadText = unverifiedPayload(text, c);
  const claims = parseClaims(payloadText, c.maxDepth);
  const { iss, partner } = await activeSender(claims, c.directory);
  let classical: { kid: string; jwk: PartnerJwk } | undefined;
  let quantum: { kid: string; jwk: PartnerJwk } | undefined;
  try {
    await verifyDual(
      text,
      {
        classical: async ({ kid }) => {
          const jwk = await publishedKey(c.directory, partner, kid ?? '');
          if (jwk.kty !== 'EC' || jwk.crv !== 'P-256') throw refused(`key ${kid} of ${iss} is not a P-256 ES256 key`);
          classical = { kid: kid ?? '', jwk };
          return publicKeyOf(jwk);
        },
        pq: async ({ kid }) => {
          const jwk = await publishedKey(c.directory, partner, kid ?? '');
          if (jwk.kty !== 'AKP' || jwk.alg !== PQ_SIGNATURE_ALG)
            throw refused(`key ${kid} of ${iss} is not an ${PQ_SIGNATURE_ALG} key`);
          quantum = { kid: kid ?? '', jwk };
          return importPublicJwk({ kty: jwk.kty, alg: jwk.alg, pub: jwk.pub });
        },
      },
      { typ: c.typ },
    );
  } catch (err) {
    if (err instanceof GatewayError && err.code === 'JWS_SIGNATURE_INVALID')
      throw new GatewayError('JWS_SIGNATURE_INVALID', `the signatures of ${iss} on ${c.what} do not verify`, {
        cause: err,
      });
    throw err;
  }
  if (!classical || !quantum) throw refused(`${c.what} is not signed with both keys of ${iss}`);
  return {
    claims,
    payloadText,
    iss,
    senderKid: classical.kid,
    senderJwk: classical.jwk,
    sender: partner,
    senderPqKid: quantum.kid,
    senderPqJwk: quantum.jwk,
  };
}
