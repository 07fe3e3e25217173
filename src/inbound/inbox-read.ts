import { appendAudit } from '../audit/append.ts';
import { auditRefusal } from '../auth/audit.ts';
import { GatewayError } from '../errors.ts';
import { isUuid } from '../ids.ts';
import { openCompactJwe, type DecryptionKeyResolver } from '../jose/open.ts';
import { verifyCompact } from '../jose/verify.ts';
import { gatewayDecryptionKeys, gatewayKemKeys } from './decryption-keys.ts';
import { openHybridCompactJwe } from '../jose/pq/hybrid-jwe.ts';
import { verifyDual } from '../jose/pq/dual-jws.ts';
import { importPublicJwk } from '../jose/public-key.ts';
import { envelopeVersion } from '../protocol/v2-negotiation.ts';
import {
  acknowledgeInboxMessage,
  getInboxMessageFor,
  listInboxMessages,
  type InboxContext,
  type InboxMessage,
  type InboxMetadata,
  type InboxQuery,
  type InboxViewer,
} from './inbox-store.ts';
import { rawMember } from './json-member.ts';
import { envelopeDigest, PROTOCOL } from '../protocol/wire.ts';
import { CONTENT_ALGS, publicKeyOf } from '../protocol/signed-content.ts';
import { inTransaction } from '../db/pool.ts';
import { queueProcessedReceipt } from './processed-notice.ts';

/** The viewer of a request, with its address for the audit trail. */
export interface InboxRequester extends InboxViewer {
  remoteAddress?: string;
}

/** The reading EHR client as the audit trail names it: its id and the address it asked from. */
export const clientAgent = (viewer: InboxRequester) => ({
  type: 'client' as const,
  id: viewer.clientId,
  ...(viewer.remoteAddress ? { network: viewer.remoteAddress } : {}),
});

export interface OpenedMessage {
  meta: InboxMetadata;
  /** The Bundle JSON text exactly as the sender signed it. */
  bundle: string;
  /** The signed content_type: application/fhir+json, or an imaging manifest's DICOM media type. */
  contentType: string;
  /** The sender's verified compact JWS and its iat (seconds), for a Provenance of the message. */
  signed: { jws: string; iat: number };
  /** The purpose the sender signed (checked on receipt), read again from the verified claims. */
  purposeOfUse: string[] | undefined;
}

/** The stored message opened and verified again: its content text, content_type and the signed JWS. */
export type OpenedContent = Omit<OpenedMessage, 'meta'>;

/** 410 Gone: the message was handed over and its content purged by retention (its metadata and receipt remain). */
const purged = (id: string) =>
  new GatewayError('CONTENT_PURGED', `the content of inbox message ${id} was purged after its retention period`);

/**
 * Open a stored envelope again with the HSM-held key and re-verify the
 * sender's signature with the key that verified it on receipt (the sender
 * may have rotated since). Returns the Bundle text exactly as signed. Any
 * failure means the row was altered at rest or our key is gone: a server
 * fault, never handed over.
 */
export async function openStoredMessage(
  ctx: Pick<InboxContext, 'hsm' | 'config' | 'logger' | 'keyring'>,
  row: InboxMessage,
  resolveKey: DecryptionKeyResolver,
): Promise<string> {
  return (await openStoredContent(ctx, row, resolveKey)).bundle;
}

/** openStoredMessage, with the content_type and the verified JWS kept. */
export async function openStoredContent(
  ctx: Pick<InboxContext, 'hsm' | 'config' | 'logger' | 'keyring'>,
  row: InboxMessage,
  resolveKey: DecryptionKeyResolver,
): Promise<OpenedContent> {
  const envelope = row.envelope;
  if (envelope === null && row.purgedAt) throw purged(row.id);
  try {
    // Not purged, yet gone: damage at rest, answered like an envelope altered at rest.
    if (envelope === null) throw new Error('the sealed envelope is missing');
    if (envelopeDigest(envelope) !== row.envelopeDigest) throw new Error('envelope digest mismatch');
    const jws = await openStoredJws(ctx, envelope, resolveKey);
    const { payload } = await verifyStoredJws(jws, row);
    const text = Buffer.from(payload).toString('utf8');
    const claims = JSON.parse(text) as {
      iss?: unknown;
      jti?: unknown;
      iat?: unknown;
      content_type?: unknown;
      purpose_of_use?: unknown;
    };
    if (claims.iss !== row.sender || claims.jti !== row.jti) throw new Error('claims do not match the stored metadata');
    const raw = rawMember(text, 'content');
    if (raw === undefined) throw new Error('no content member');
    if (typeof claims.content_type !== 'string' || typeof claims.iat !== 'number') throw new Error('claims incomplete');
    const purpose = claims.purpose_of_use;
    return {
      bundle: raw,
      contentType: claims.content_type,
      signed: { jws, iat: claims.iat },
      purposeOfUse: Array.isArray(purpose) ? purpose.map(String) : undefined,
    };
  } catch (err) {
    ctx.logger.error(
      { messageId: row.id, reason: err instanceof GatewayError ? err.code : (err as Error).message },
      'a stored inbox message failed to open or verify',
    );
    throw new GatewayError('INTERNAL', 'the stored message failed to open or verify', { cause: err });
  }
}

/** The stored envelope opened again, v1 or v2 (as it was received: its header says which). */
async function openStoredJws(
  ctx: Pick<InboxContext, 'hsm' | 'config' | 'keyring'>,
  envelope: string,
  resolveKey: DecryptionKeyResolver,
): Promise<string> {
  const options = { hsm: ctx.hsm, kdf: ctx.config.hsmKdf, resolveKey };
  const opened =
    envelopeVersion(envelope) === 2
      ? await openHybridCompactJwe(envelope, { ...options, resolveKemKey: gatewayKemKeys(ctx.keyring) })
      : await openCompactJwe(envelope, options);
  const jws = opened.plaintext.toString('utf8');
  opened.plaintext.fill(0);
  return jws;
}

/** The sender's signature(s) checked again with the key(s) that verified them on arrival: both for a v2 message. */
function verifyStoredJws(jws: string, row: InboxMessage) {
  const classical = async () => publicKeyOf(row.senderJwk);
  if (!row.senderPqJwk) return verifyCompact(jws, classical, { typ: PROTOCOL.contentTyp, algorithms: CONTENT_ALGS });
  const pq = row.senderPqJwk;
  return verifyDual(
    jws,
    { classical, pq: async () => importPublicJwk({ kty: pq.kty, alg: pq.alg, pub: pq.pub }) },
    { typ: PROTOCOL.contentTyp },
  );
}

/**
 * The hand-over to the local EHR. Messages rest sealed; reading one opens it
 * again with the HSM-held key and re-verifies the sender's signature with the
 * key that verified it on receipt (the sender may have rotated since), so a
 * row altered at rest can never be handed over.
 */
export function inboxReader(ctx: InboxContext, resolveKey: DecryptionKeyResolver = gatewayDecryptionKeys(ctx.keyring)) {
  const notFound = (id: string) => new GatewayError('NOT_FOUND', `no inbox message ${id}`);

  /**
   * A message routed to other clients is answered exactly like an unknown id
   * (404, same text), so its existence does not leak; unlike an unknown id,
   * the attempt is audited as authz.denied (ids only, no content).
   */
  async function refuseNotRouted(id: string, viewer: InboxRequester, operation: string): Promise<never> {
    await auditRefusal(
      ctx.pool,
      ctx.logger,
      'authz.denied',
      { clientId: viewer.clientId, remoteAddress: viewer.remoteAddress },
      {
        reason: 'inbox_not_routed',
        operation,
        message: id,
      },
    );
    throw notFound(id);
  }

  async function load(id: string, viewer: InboxRequester, operation: string) {
    const found = isUuid(id) ? await getInboxMessageFor(ctx.pool, id, viewer) : undefined;
    if (!found) throw notFound(id);
    if (!found.visible) return refuseNotRouted(id, viewer, operation);
    if (found.message.purgedAt) {
      await appendAudit(ctx.pool, [
        {
          type: 'inbox.read',
          outcome: 'minor-failure',
          agent: { type: 'client', id: viewer.clientId },
          entity: [{ type: 'inbox-message', id, digest: found.message.envelopeDigest }],
          detail: { reason: 'CONTENT_PURGED' },
        },
      ]);
      throw purged(id);
    }
    return found.message;
  }

  /**
   * The state change, its audit entry and the processed receipt owed to the
   * sender on one transaction; nothing is written unless the viewer may see the message.
   */
  async function acknowledgeAudited(id: string, viewer: InboxRequester) {
    return inTransaction(ctx.pool, async (client) => {
      const now = new Date();
      const result = await acknowledgeInboxMessage(client, id, viewer, now);
      if (result && result !== 'not-visible' && result.changed) {
        const agent = clientAgent(viewer);
        await appendAudit(client, [
          {
            type: 'inbox.acknowledged',
            outcome: 'success',
            agent,
            entity: [
              { type: 'inbox-message', id, digest: result.meta.envelopeDigest },
              { type: 'delivery', id: result.meta.jti },
            ],
          },
        ]);
        await queueProcessedReceipt(client, result.meta, 'acknowledged', now, agent);
      }
      return result;
    });
  }

  return {
    list(query: InboxQuery, viewer: InboxViewer): Promise<InboxMetadata[]> {
      return listInboxMessages(ctx.pool, query, viewer);
    },

    async read(id: string, viewer: InboxRequester): Promise<OpenedMessage> {
      const row = await load(id, viewer, 'inbox.read');
      let opened: OpenedContent;
      try {
        opened = await openStoredContent(ctx, row, resolveKey);
      } catch (err) {
        await appendAudit(ctx.pool, [
          {
            type: 'inbox.read',
            outcome: 'serious-failure',
            agent: clientAgent(viewer),
            entity: [{ type: 'inbox-message', id: row.id, digest: row.envelopeDigest }],
            detail: { reason: err instanceof GatewayError ? err.code : 'INTEGRITY' },
            ...(row.purposeOfUse ? { purposeOfUse: row.purposeOfUse } : {}),
          },
        ]);
        throw err;
      }
      await appendAudit(ctx.pool, [
        {
          type: 'inbox.read',
          outcome: 'success',
          agent: clientAgent(viewer),
          entity: [
            { type: 'inbox-message', id: row.id, digest: row.envelopeDigest },
            { type: 'delivery', id: row.jti },
          ],
          ...(opened.purposeOfUse ? { purposeOfUse: opened.purposeOfUse } : {}),
        },
      ]);
      return { meta: row, ...opened };
    },

    async acknowledge(id: string, viewer: InboxRequester): Promise<InboxMetadata> {
      if (!isUuid(id)) throw notFound(id);
      const result = await acknowledgeAudited(id, viewer);
      if (!result) throw notFound(id);
      // Refused after the acknowledging transaction ended: the refusal is audited in its own.
      if (result === 'not-visible') return refuseNotRouted(id, viewer, 'inbox.acknowledge');
      return result.meta;
    },
  };
}
