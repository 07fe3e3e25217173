import { join } from 'node:path';
import { GatewayError } from '../../errors.ts';
import { required } from '../../required.ts';
import { boundaryOf, multipartParts, parseMediaType, type Part } from '../../imaging/multipart.ts';
import type { DecryptionKeyResolver } from '../../jose/open.ts';
import { openStream } from '../../jose/stream-open.ts';
import { gatewayDecryptionKeys, gatewayKemKeys } from '../decryption-keys.ts';
import { imagingDir, PendingFile } from '../../imaging/sealed-files.ts';
import { DicomRecheck } from './recheck.ts';
import { checkStudyMatches } from '../../imaging/study-match.ts';
import { verifyAnnouncement } from '../../protocol/imaging-announcement.ts';
import { checkManifestContent, signImagingReceipt, type ManifestContent } from '../../protocol/imaging-manifest.ts';
import { findBySenderJti, isConcurrentReplay, writeInboxMessages } from '../inbox-store.ts';
import { receiptDigest } from '../../protocol/evidence.ts';
import { envelopeDigest, PROTOCOL } from '../../protocol/wire.ts';
import {
  auditInboxRefusal,
  requireBoundSender,
  type InboxContext,
  type ReceiveMeta,
  type ReceiveResult,
} from '../receive.ts';
import { markRefusalAudited } from '../../auth/audit.ts';
import type { VerifiedContent } from '../../protocol/signed-content.ts';
import { refuseDowngrade, type ProtocolVersion } from '../../protocol/v2-acceptance.ts';
import { openManifest } from './manifest-open.ts';
import { uuidv7 } from '../../ids.ts';
import { inTransaction } from '../../db/pool.ts';

const MANIFEST_MAX = 16 * 1024 * 1024;
const ANNOUNCE_MAX = 16 * 1024;

async function textOf(part: Part, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const b of part.body) {
    n += b.length;
    if (n > max)
      throw new GatewayError('PAYLOAD_TOO_LARGE', `the manifest envelope exceeds ${max} bytes`, {
        expression: 'part[0]',
      });
    chunks.push(Buffer.from(b));
  }
  return Buffer.concat(chunks).toString('latin1');
}

function requireJose(part: Part | undefined, index: number): Part {
  if (!part)
    throw new GatewayError(
      'BAD_REQUEST',
      `an imaging delivery has two parts: the manifest envelope, then the content; part ${index + 1} is missing`,
      { expression: `part[${index}]` },
    );
  if (parseMediaType(part.headers['content-type'])?.type !== PROTOCOL.mediaType)
    throw new GatewayError('UNSUPPORTED_MEDIA_TYPE', `part ${index + 1} must be ${PROTOCOL.mediaType}`, {
      expression: `part[${index}]`,
    });
  return part;
}

/**
 * POST {inbox}/imaging: multipart/related of three application/jose parts:
 * (1) the signed announcement, verified before any bulk is accepted (sender,
 * aud, iat, replay); (2) the content JWE, streamed: its raw bytes to a
 * pending file (still sealed to our key) and through the HSM-keyed decipher,
 * hashing the plaintext and dropping it; (3) the manifest envelope, opened
 * and verified, which must name the same delivery and exactly the SHA-256,
 * length and media type of what was deciphered under a valid tag. Only then
 * is the file moved into place, the message stored and the receipt signed.
 */
export function imagingReceiver(
  ctx: InboxContext,
  resolveKey: DecryptionKeyResolver = gatewayDecryptionKeys(ctx.keyring),
  resolveKemKey = gatewayKemKeys(ctx.keyring),
) {
  return async function receive(
    contentType: string | undefined,
    body: AsyncIterable<Buffer>,
    meta: ReceiveMeta = {},
  ): Promise<ReceiveResult> {
    const now = meta.now ?? new Date();
    const media = parseMediaType(contentType);
    if (media?.type !== 'multipart/related')
      throw new GatewayError(
        'UNSUPPORTED_MEDIA_TYPE',
        `POST ${PROTOCOL.inboxPath}/imaging takes multipart/related: announcement, content JWE, manifest envelope`,
      );
    const parts = multipartParts(body, boundaryOf(media), { maxParts: 3 });
    let digest: string | undefined;
    let announced: Awaited<ReturnType<typeof verifyAnnouncement>> | undefined;
    let verified: VerifiedContent | undefined;
    let file: PendingFile | undefined;
    try {
      const checks = {
        directory: ctx.directory,
        org: ctx.config.org,
        clockSkewMs: ctx.config.clockSkew,
        maxAgeMs: ctx.config.inboxMaxAge,
        now: now.getTime(),
      };
      // Compact (v1) or dual-signed JSON (v2), both application/jose like every part and receipt: the form decides.
      announced = await verifyAnnouncement(
        (await textOf(requireJose((await parts.next()).value || undefined, 0), ANNOUNCE_MAX)).trim(),
        checks,
      );
      // Before anything is looked up or read: a peer certificate bound to another partner learns nothing.
      requireBoundSender(meta, announced.iss);
      const earlier = await findBySenderJti(ctx.pool, announced.iss, announced.jti);
      if (earlier) {
        // The same delivery again (the sender lost our answer): the first receipt; the bulk is not read.
        await parts.return(undefined);
        return { receipt: earlier.receipt, messageId: earlier.id, duplicate: true, auditIndex: earlier.auditIndex };
      }
      const protocol = announced.protocol;
      // A v1 delivery from a sender that signs with ML-DSA-65, to us while we publish our post-quantum keys.
      refuseDowngrade(
        protocol,
        { id: announced.iss, keys: (await ctx.directory.publishedKeys(announced.sender)).keys },
        (await ctx.keyring.fresh()).jwks({ pq: ctx.config.protocolV2 === 'on' }).keys,
      );
      const messageId = uuidv7();
      file = await PendingFile.create(join(await imagingDir(ctx.config, 'inbox'), `${messageId}.jwe`));
      const contentPart = requireJose((await parts.next()).value || undefined, 1);
      const pending = file;
      const recheck = new DicomRecheck(ctx.config);
      async function* tee(): AsyncGenerator<Buffer> {
        for await (const b of contentPart.body) {
          await pending.write(b);
          yield b;
        }
      }
      const content = await openStream(
        tee(),
        {
          hsm: ctx.hsm,
          kdf: ctx.config.hsmKdf,
          resolveKey,
          resolveKemKey,
          version: protocol,
          maxBytes: ctx.config.dicomMaxBytes,
        },
        recheck,
      );
      const envelope = (await textOf(requireJose((await parts.next()).value || undefined, 2), MANIFEST_MAX)).trim();
      if (!(await parts.next()).done)
        throw new GatewayError('BAD_REQUEST', 'an imaging delivery has exactly three parts', { expression: 'part[3]' });
      digest = envelopeDigest(envelope);
      const opened = await openManifest(
        ctx,
        envelope,
        protocol,
        { resolveKey, resolveKemKey },
        {
          ...checks,
          checkContent: (c) => void checkManifestContent(c),
        },
      );
      verified = opened.verified;
      const c = verified.claims;
      if (c.iss !== announced.iss || c.jti !== announced.jti || c.exchange !== announced.exchange) {
        throw new GatewayError('CLAIMS_INVALID', 'the manifest names another delivery than the announcement', {
          expression: 'jti',
        });
      }
      const manifest = c.content as ManifestContent;
      if (
        content.header.cty !== c.content_type ||
        content.length !== manifest.length ||
        content.sha256.toString('base64url') !== manifest.sha256
      ) {
        throw new GatewayError(
          'CONTENT_DIGEST_MISMATCH',
          'the content does not match the media type, SHA-256 and length in the signed manifest',
          { expression: 'content.sha256' },
        );
      }
      // The intake's DICOM checks again, on what we deciphered, and the signed ImagingStudy must describe it.
      checkStudyMatches(recheck.instances(), manifest.imagingStudy);
      return await store(ctx, {
        envelope,
        digest,
        verified,
        messageId,
        encKid: required(opened.encKid, 'a kid on every gateway encryption key'),
        protocol,
        file,
        contentDigest: `sha-256=${manifest.sha256}`,
        contentJweLength: content.jweLength,
        length: content.length,
        now,
        meta,
      });
    } catch (err) {
      await file?.discard();
      if (err instanceof GatewayError && err.status < 500) {
        await auditInboxRefusal(ctx, err, {
          digest,
          signed: verified?.claims ?? announced,
          content: 'imaging',
          meta,
          now,
        });
        markRefusalAudited(err);
      }
      throw err;
    }
  };
}

interface Received {
  envelope: string;
  digest: string;
  verified: VerifiedContent;
  messageId: string;
  encKid: string;
  file: PendingFile;
  /** "sha-256=" + base64url of the content plaintext, verified against the manifest. */
  contentDigest: string;
  contentJweLength: number;
  length: number;
  protocol: ProtocolVersion;
  now: Date;
  meta: ReceiveMeta;
}

const concurrent = () =>
  new GatewayError('UNAVAILABLE', 'a concurrent delivery of the same id is in progress; retry', { retryAfter: 1 });

async function store(ctx: InboxContext, r: Received): Promise<ReceiveResult> {
  const { iss: sender, jti, exchange, content_type } = r.verified.claims;
  const keys = await ctx.keyring.fresh();
  const { receipt, claims } = await signImagingReceipt(
    keys.signer(),
    { iss: ctx.config.org, aud: sender, delivery: jti, digest: r.digest, contentDigest: r.contentDigest, now: r.now },
    // A v2 delivery gets a v2 receipt: the same claims, signed with ES256 and ML-DSA-65.
    r.protocol === 2 ? await keys.pqSigner() : undefined,
  );
  // Signed first (an HSM and an ML-DSA signature take a while): a file under its final name is one insert from its row.
  await r.file.commit();
  let auditIndex: number | undefined;
  try {
    auditIndex = await inTransaction(ctx.pool, async (client) => {
      const stored = await writeInboxMessages(
        client,
        [
          {
            row: {
              id: r.messageId,
              sender,
              jti,
              exchangeId: exchange,
              envelope: r.envelope,
              envelopeDigest: r.digest,
              encKid: r.encKid,
              senderKid: r.verified.senderKid,
              senderJwk: r.verified.senderJwk,
              // v2: the ML-DSA-65 key that verified the second signature, to verify it again on every read.
              senderPqJwk: r.verified.senderPq?.jwk,
              receiptId: claims.jti,
              receipt,
              receivedAt: r.now,
              purposeOfUse: r.verified.purposeOfUse,
            },
            audit: {
              type: 'inbox.accepted',
              outcome: 'success',
              agent: {
                type: 'partner',
                id: sender,
                ...(r.meta.remoteAddress ? { network: r.meta.remoteAddress } : {}),
              },
              entity: [
                { type: 'inbox-message', id: r.messageId, digest: r.digest },
                { type: 'imaging-content', id: r.messageId, digest: r.contentDigest },
                { type: 'delivery', id: jti },
                { type: 'exchange', id: exchange },
                { type: 'receipt', id: claims.jti, digest: receiptDigest(receipt) },
              ],
              detail: {
                content: 'imaging',
                bytes: r.length,
                encKid: r.encKid,
                senderKid: r.verified.senderKid,
                protocol: r.protocol,
                ...(r.verified.senderPq ? { senderPqKid: r.verified.senderPq.kid } : {}),
              },
              ...(r.verified.purposeOfUse ? { purposeOfUse: r.verified.purposeOfUse } : {}),
            },
          },
        ],
        { forward: undefined },
        r.now,
      ).catch((err: unknown) => Promise.reject(isConcurrentReplay(err) ? concurrent() : err));
      const index = stored.get(r.messageId);
      if (index === undefined) throw concurrent();
      await client.query(
        'INSERT INTO imaging_inbox_content (message_id, content_type, content_path, content_length, content_jwe_length) VALUES ($1, $2, $3, $4, $5)',
        [r.messageId, content_type, r.file.path, r.length, r.contentJweLength],
      );
      return index;
    });
  } catch (err) {
    await r.file.discard();
    throw err;
  }
  return { receipt, messageId: r.messageId, duplicate: false, auditIndex };
}
