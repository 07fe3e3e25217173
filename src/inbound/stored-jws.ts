import type { Directory, PartnerJwk } from '../directory/directory.ts';
import { fromB64u } from '../jose/base64url.ts';
import { openCompactJwe, type DecryptionKeyResolver } from '../jose/open.ts';
import { PQ_SIGNATURE_ALG, verifyDual } from '../jose/pq/dual-jws.ts';
import { openHybridCompactJwe, type KemKeyResolver } from '../jose/pq/hybrid-jwe.ts';
import { importPublicJwk } from '../jose/public-key.ts';
import { verifyCompact, type VerifiedJws } from '../jose/verify.ts';
import { CONTENT_ALGS, publicKeyOf } from '../protocol/signed-content.ts';
import { envelopeVersion } from '../protocol/v2-negotiation.ts';
import { PROTOCOL } from '../protocol/wire.ts';
import type { InboxContext } from './inbox-store.ts';

/**
 * A stored inbox envelope opened again and its signature re-verified, in the
 * version it arrived in (its header says which): v1 ECDH-ES and a compact
 * JWS checked with the stored ES256 key; v2 the hybrid envelope (ML-KEM key
 * by kem_kid) and both signatures, the ML-DSA-65 key looked up as the sender
 * published it when it signed (the key-transparency log keeps withdrawn ones).
 */
export interface StoredJwsRow {
  sender: string;
  senderJwk: PartnerJwk;
}

type StoredContext = Pick<InboxContext, 'hsm' | 'config'> & {
  resolveKemKey: KemKeyResolver;
  directory?: Pick<Directory, 'verificationKey'>;
};

export async function openStoredJws(
  ctx: StoredContext,
  envelope: string,
  resolveKey: DecryptionKeyResolver,
): Promise<{ jws: string; protocol: 1 | 2 }> {
  const options = { hsm: ctx.hsm, kdf: ctx.config.hsmKdf, resolveKey };
  const v2 = envelopeVersion(envelope) === 2;
  const opened = v2
    ? await openHybridCompactJwe(envelope, { ...options, resolveKemKey: ctx.resolveKemKey })
    : await openCompactJwe(envelope, options);
  const jws = opened.plaintext.toString('utf8');
  opened.plaintext.fill(0);
  return { jws, protocol: v2 ? 2 : 1 };
}

export async function verifyStoredJws(
  ctx: StoredContext,
  opened: { jws: string; protocol: 1 | 2 },
  row: StoredJwsRow,
): Promise<VerifiedJws> {
  const classical = async () => publicKeyOf(row.senderJwk);
  if (opened.protocol === 1)
    return verifyCompact(opened.jws, classical, { typ: PROTOCOL.contentTyp, algorithms: CONTENT_ALGS });
  const directory = ctx.directory;
  if (!directory) throw new Error('re-verifying a protocol v2 message needs the partner directory');
  const doc = JSON.parse(opened.jws) as { payload?: string };
  const iat = (JSON.parse(fromB64u(doc.payload ?? '').toString('utf8')) as { iat?: unknown }).iat;
  if (typeof iat !== 'number') throw new Error('a stored v2 message without iat');
  return verifyDual(
    opened.jws,
    {
      classical: async ({ kid }) => {
        if (kid !== row.senderJwk.kid && kid !== undefined && row.senderJwk.kid !== undefined)
          throw new Error('the ES256 signature names another key than verified it on arrival');
        return classical();
      },
      pq: async ({ kid }) => {
        const jwk = await directory.verificationKey(row.sender, kid ?? '', { signedAt: new Date(iat * 1000) });
        if (jwk.kty !== 'AKP' || jwk.alg !== PQ_SIGNATURE_ALG) throw new Error(`key ${kid} is not an ML-DSA-65 key`);
        return importPublicJwk({ kty: 'AKP', alg: jwk.alg, pub: jwk.pub });
      },
    },
    { typ: PROTOCOL.contentTyp },
  );
}
