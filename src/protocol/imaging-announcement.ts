import type { Directory, Partner, PartnerJwk } from '../directory/directory.ts';
import { signJson } from '../jose/jws.ts';
import { signDual, type PqSigner } from '../jose/pq/dual-jws.ts';
import type { Signer } from '../jose/signer.ts';
import { verifySignedDualJws } from './signed-dual-jws.ts';
import { announcementVersion } from './imaging-protocol.ts';
import type { ProtocolVersion } from './v2-acceptance.ts';
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

/** Compact ES256 (v1), or with `pq` dual-signed ES256 + ML-DSA-65 in the JSON serialization (v2, §14.3). */
export function signAnnouncement(signer: Signer, a: Announcement, pq?: PqSigner): Promise<string> {
  const claims = { iss: a.iss, aud: a.aud, iat: a.iat, jti: a.jti, exchange: a.exchange };
  return pq
    ? signDual(signer, pq, JSON.stringify(claims), { typ: ANNOUNCE_TYP })
    : signJson(signer, claims, { typ: ANNOUNCE_TYP });
}

export interface AnnouncementChecks {
  directory: Pick<Directory, 'sender' | 'verificationKey'>;
  org: string;
  clockSkewMs: number;
  maxAgeMs: number;
  now: number;
}

export interface VerifiedAnnouncement extends Announcement {
  /** Its form: 1 compact, 2 dual-signed; the whole delivery is held to it (imaging-protocol.ts). */
  protocol: ProtocolVersion;
  senderKid: string;
  senderJwk: PartnerJwk;
  sender: Partner;
}

/**
 * Verify the announcement with the rules of every signed exchange JWS
 * (src/protocol/signed-jws.ts), or of the dual-signed form for v2 (both
 * signatures by the sender's published keys).
 */
export async function verifyAnnouncement(jws: string, c: AnnouncementChecks): Promise<VerifiedAnnouncement> {
  const protocol = announcementVersion(jws);
  const checks = { directory: c.directory, typ: ANNOUNCE_TYP, what: 'the imaging announcement', expression: 'part[0]' };
  const v = protocol === 2 ? await verifySignedDualJws(jws, checks) : await verifySignedJws(jws, checks);
  checkExchangeClaims(v.claims, c);
  const { aud, iat, jti, exchange } = v.claims as unknown as Announcement;
  return {
    iss: v.iss,
    aud,
    iat,
    jti,
    exchange,
    protocol,
    senderKid: v.senderKid,
    senderJwk: v.senderJwk,
    sender: v.sender,
  };
}
