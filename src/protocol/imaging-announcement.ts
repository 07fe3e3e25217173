import type { Directory, PartnerJwk } from '../directory/directory.ts';
import { GatewayError } from '../errors.ts';
import { signJson } from '../jose/jws.ts';
import type { Signer } from '../jose/signer.ts';
import { verifyCompact } from '../jose/verify.ts';
import { CONTENT_ALGS } from './signed-content.ts';

/**
 * The first part of an imaging delivery: a small signed JWS that
 * authenticates the sender BEFORE the receiver accepts any bulk, so the
 * content can stream while the sender is still sealing it (the manifest,
 * which needs the content's digest, comes last). It carries identifiers
 * only (no PHI) and is not encrypted.
 */
export const ANNOUNCE_TYP = 'exchange-imaging+jwt';

export interface Announcement {
  iss: string;
  aud: string;
  iat: number;
  jti: string;
  exchange: string;
}

export function signAnnouncement(signer: Signer, a: Announcement): Promise<string> {
  return signJson(
    signer,
    { iss: a.iss, aud: a.aud, iat: a.iat, jti: a.jti, exchange: a.exchange },
    { typ: ANNOUNCE_TYP },
  );
}

export interface AnnouncementChecks {
  directory: Pick<Directory, 'get' | 'verificationKey'>;
  org: string;
  clockSkewMs: number;
  maxAgeMs: number;
  now: number;
}

const UUIDISH = /^[A-Za-z0-9._:-]{1,128}$/;

/** Verify the announcement: a known, active sender's published key; aud = us; iat in the window. */
export async function verifyAnnouncement(
  jws: string,
  c: AnnouncementChecks,
): Promise<Announcement & { senderKid: string; senderJwk: PartnerJwk }> {
  const parts = jws.split('.');
  if (parts.length !== 3)
    throw new GatewayError('JWS_MALFORMED', 'the imaging announcement is not a compact JWS', { expression: 'part[0]' });
  let unverified: Record<string, unknown>;
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8')) as Record<string, unknown>;
    unverified = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new GatewayError('JWS_MALFORMED', 'the imaging announcement is not JSON', { expression: 'part[0]' });
  }
  const iss = unverified?.iss;
  if (typeof iss !== 'string' || !iss)
    throw new GatewayError('CLAIMS_INVALID', 'iss is missing', { expression: 'iss' });
  const partner = await c.directory.get(iss);
  if (!partner || partner.status !== 'active')
    throw new GatewayError('UNKNOWN_SENDER', `sender ${iss} is not an active partner in this gateway's directory`, {
      expression: 'iss',
    });
  if (typeof header.kid !== 'string' || !header.kid)
    throw new GatewayError('JWS_MALFORMED', 'the announcement names no kid');
  const kid = header.kid;
  let senderJwk: PartnerJwk;
  try {
    senderJwk = await c.directory.verificationKey(iss, kid, 'current');
  } catch (err) {
    if (err instanceof GatewayError && (err.code === 'FORBIDDEN' || err.code === 'UNPROCESSABLE'))
      throw new GatewayError('JWS_SIGNATURE_INVALID', `sender ${iss} publishes no usable signing key ${kid}`, {
        cause: err,
      });
    throw err;
  }
  try {
    await verifyCompact(jws, async () => ({ ...senderJwk, use: undefined, key_ops: undefined }) as never, {
      typ: ANNOUNCE_TYP,
      algorithms: CONTENT_ALGS,
    });
  } catch (err) {
    if (err instanceof GatewayError)
      throw new GatewayError('JWS_SIGNATURE_INVALID', `the announcement of ${iss} does not verify`, { cause: err });
    throw err;
  }
  const a = unverified;
  if (a.aud !== c.org)
    throw new GatewayError('WRONG_AUDIENCE', `aud ${JSON.stringify(a.aud)} is not this gateway`, { expression: 'aud' });
  if (
    typeof a.iat !== 'number' ||
    a.iat * 1000 > c.now + c.clockSkewMs ||
    a.iat * 1000 < c.now - c.maxAgeMs - c.clockSkewMs
  )
    throw new GatewayError('IAT_OUT_OF_WINDOW', 'iat is outside the accepted window', { expression: 'iat' });
  if (typeof a.jti !== 'string' || !UUIDISH.test(a.jti))
    throw new GatewayError('CLAIMS_INVALID', 'jti must be an identifier (a UUID)', { expression: 'jti' });
  if (typeof a.exchange !== 'string' || !UUIDISH.test(a.exchange))
    throw new GatewayError('CLAIMS_INVALID', 'exchange must be an identifier', { expression: 'exchange' });
  return { iss, aud: a.aud as string, iat: a.iat, jti: a.jti, exchange: a.exchange, senderKid: kid, senderJwk };
}
