import { GatewayError } from '../errors.ts';
import { parseFhirJson } from '../fhir/json.ts';
import { fromB64u } from '../jose/base64url.ts';
import { duplicateMember } from '../jose/duplicate-members.ts';
import { PQ_SIGNATURE_ALG, verifyDual } from '../jose/pq/dual-jws.ts';
import { importPublicJwk } from '../jose/public-key.ts';
import type { PartnerJwk } from '../directory/directory.ts';
import { publicKeyOf, type SignedJwsChecks, type VerifiedJwsSender } from './signed-jws.ts';

/**
 * A partner's dual-signed JWS (PROTOCOL.md §14.3) verified with the keys it
 * publishes now: exactly an ES256 and an ML-DSA-65 signature over one payload
 * with one typ, each by the key its header names, both verifying. The same
 * directory lookup (refetch on an unknown kid, withdrawn keys refused) as the
 * compact form in signed-jws.ts.
 */
export interface VerifiedDualSender extends VerifiedJwsSender {
  senderPqKid: string;
  senderPqJwk: PartnerJwk;
}

const DEFAULT_CLAIMS_DEPTH = 65;
const refused = (message: string, cause?: unknown) => new GatewayError('JWS_SIGNATURE_INVALID', message, { cause });

/** The claims of the unverified payload: only the sender they name is read, to choose its keys. */
function claimsOf(text: string, c: Pick<SignedJwsChecks, 'what' | 'expression' | 'maxDepth'>): Record<string, unknown> {
  let payload: unknown;
  try {
    payload = (JSON.parse(text) as { payload?: unknown }).payload;
  } catch {
    payload = undefined;
  }
  if (typeof payload !== 'string')
    throw new GatewayError('JWS_MALFORMED', `${c.what} does not hold a JWS in the JSON serialization`, {
      expression: c.expression,
    });
  const payloadText = fromB64u(payload).toString('utf8');
  let claims: unknown;
  try {
    // The guards of a Bundle at intake: a partner's signature does not make content safe.
    claims = parseFhirJson(payloadText, c.maxDepth ?? DEFAULT_CLAIMS_DEPTH);
  } catch (err) {
    const why = err instanceof GatewayError ? err.message : 'malformed JSON';
    throw new GatewayError('CLAIMS_INVALID', `the signed payload is refused: ${why}`);
  }
  if (!claims || typeof claims !== 'object' || Array.isArray(claims))
    throw new GatewayError('CLAIMS_INVALID', 'the signed payload is not a JSON object');
  const repeated = duplicateMember(payloadText);
  if (repeated !== undefined)
    throw new GatewayError('CLAIMS_INVALID', `the signed payload repeats the member ${JSON.stringify(repeated)}`);
  return claims as Record<string, unknown>;
}

export async function verifySignedDualJws(text: string, c: SignedJwsChecks): Promise<VerifiedDualSender> {
  const claims = claimsOf(text, c);
  const iss = claims.iss;
  if (typeof iss !== 'string' || iss === '')
    throw new GatewayError('CLAIMS_INVALID', 'iss is missing', { expression: 'iss' });
  const partner = await c.directory.get(iss);
  if (!partner)
    throw new GatewayError('UNKNOWN_SENDER', `sender ${iss} is not in this gateway's directory`, { expression: 'iss' });
  if (partner.status !== 'active')
    throw new GatewayError('UNKNOWN_SENDER', `sender ${iss} is suspended`, { expression: 'iss' });
  const published = async (kid: string | undefined): Promise<PartnerJwk> => {
    try {
      return await c.directory.verificationKey(partner, kid ?? '', 'current');
    } catch (err) {
      // No such key published: the signature cannot be from this sender. JWKS fetch trouble (503) stays transient.
      if (err instanceof GatewayError && (err.code === 'FORBIDDEN' || err.code === 'UNPROCESSABLE'))
        throw refused(`sender ${iss} publishes no usable signing key ${String(kid)}`, err);
      throw err;
    }
  };
  let classical: { kid: string; jwk: PartnerJwk } | undefined;
  let quantum: { kid: string; jwk: PartnerJwk } | undefined;
  let verified: Awaited<ReturnType<typeof verifyDual>>;
  try {
    verified = await verifyDual(
      text,
      {
        classical: async ({ kid }) => {
          const jwk = await published(kid);
          if (jwk.kty !== 'EC' || jwk.crv !== 'P-256') throw refused(`key ${kid} of ${iss} is not a P-256 ES256 key`);
          classical = { kid: kid as string, jwk };
          return publicKeyOf(jwk);
        },
        pq: async ({ kid }) => {
          const jwk = await published(kid);
          if (jwk.kty !== 'AKP' || jwk.alg !== PQ_SIGNATURE_ALG)
            throw refused(`key ${kid} of ${iss} is not an ${PQ_SIGNATURE_ALG} key`);
          quantum = { kid: kid as string, jwk };
          return importPublicJwk({ kty: 'AKP', alg: jwk.alg, pub: jwk.pub });
        },
      },
      { typ: c.typ },
    );
  } catch (err) {
    if (err instanceof GatewayError && err.code === 'JWS_SIGNATURE_INVALID')
      throw refused(`the signatures of ${iss} on ${c.what} do not verify`, err);
    if (err instanceof GatewayError && err.code === 'JWS_MALFORMED')
      throw new GatewayError('JWS_MALFORMED', `${c.what}: ${err.message}`, { expression: c.expression, cause: err });
    throw err;
  }
  if (!classical || !quantum) throw refused(`${c.what} is not signed with both keys of ${iss}`);
  const payloadText = Buffer.from(verified.payload).toString('utf8');
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
