import type { Directory, PartnerJwk } from '../directory/directory.ts';
import { signJson } from '../jose/jws.ts';
import type { Signer } from '../jose/signer.ts';
import { checkExchangeClaims, verifySignedJws } from './signed-jws.ts';

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

/** Verify the announcement with the rules of every signed exchange JWS (src/protocol/signed-jws.ts). */
export async function verifyAnnouncement(
  jws: string,
  c: AnnouncementChecks,
): Promise<Announcement & { senderKid: string; senderJwk: PartnerJwk }> {
  const v = await verifySignedJws(jws, {
    directory: c.directory,
    typ: ANNOUNCE_TYP,
    what: 'the imaging announcement',
    expression: 'part[0]',
  });
  checkExchangeClaims(v.claims, c);
  const { aud, iat, jti, exchange } = v.claims as unknown as Announcement;
  return { iss: v.iss, aud, iat, jti, exchange, senderKid: v.senderKid, senderJwk: v.senderJwk };
}
