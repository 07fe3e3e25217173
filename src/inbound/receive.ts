import { GatewayError } from '../errors.ts';
import { required } from '../required.ts';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import { keepRefusal, markRefusalAudited } from '../auth/audit.ts';
import type { DecryptionKeyResolver } from '../jose/open.ts';
import { signReceipt } from '../protocol/receipt.ts';
import { receiptDigest } from '../protocol/evidence.ts';
import { gatewayDecryptionKeys, gatewayKemKeys, openWithGatewayKeys } from './decryption-keys.ts';
import {
  findBySenderJti,
  isConcurrentReplay,
  writeInboxMessages,
  type AcceptedMessage,
  type InboxContext,
} from './inbox-store.ts';
import { GroupCommit } from '../db/batcher.ts';
import { commitPool, inTransaction, type PoolClient } from '../db/pool.ts';
import { envelopeDigest, type ExchangeClaims } from '../protocol/wire.ts';
import { messageHeaderId, type ResponseCode } from '../fhir/message-header.ts';
import {
  verifySignedContent,
  verifySignedDualContent,
  type ContentChecks,
  type VerifiedContent,
} from '../protocol/signed-content.ts';
import { refuseDowngrade, requireSignatureForm } from '../protocol/v2-acceptance.ts';
import { envelopeVersion } from '../protocol/v2-negotiation.ts';
import { uuidv7 } from '../ids.ts';
import { checkReceivedOrigin } from './message-origin.ts';
import { patientIdentifiers } from '../fhir/patient-identifiers.ts';
import { blindPatients } from '../compliance/blind.ts';
import { requireBoundSender } from '../protocol/signed-jws.ts';

export { requireBoundSender } from '../protocol/signed-jws.ts';

export type { InboxContext } from './inbox-store.ts';

export interface ReceiveResult {
  receipt: string;
  messageId: string;
  duplicate: boolean;
  /** The leaf index of our audit entry that records the receipt (absent for messages stored before it was kept). */
  auditIndex?: number;
}

export interface ReceiveMeta {
  /** The peer's network address, for the audit trail. */
  remoteAddress?: string;
  /** The partner a mutual-TLS peer certificate is bound to, if the inbox requires one. */
  tlsPartner?: string;
  now?: Date;
}

/** A received response, matched to the delivery of ours it answers. */
export interface CorrelatedResponse {
  delivery: string;
  exchange: string;
  code: ResponseCode;
}

/**
 * What the sending side makes of a received response message (its signed
 * response_to names one of our deliveries). Given by the composition root,
 * since the inbound pipeline does not know the outbound tables.
 */
export interface ResponseCorrelation {
  /** The delivery it answers; a 4xx when it names nothing we sent to that partner. Undefined: not a response. */
  check(claims: ExchangeClaims): Promise<CorrelatedResponse | undefined>;
  /** On the transaction that stores the message: the exchange learns its response arrived. */
  record(db: PoolClient, response: CorrelatedResponse & { messageId: string; at: Date; sender: string }): Promise<void>;
}

/**
 * Group commit of accepted messages: concurrent receives share one
 * statement (one WAL flush, one audit-head lock), and each is answered only
 * after its commit. A receipt is never sent for an uncommitted row. A batch
 * holding responses to our deliveries also records them, on one
 * transaction with the messages.
 */
function inboxWriter(ctx: InboxContext, responses: ResponseCorrelation | undefined) {
  // Optional push to the local EHR, queued with the messages (payload: the id only).
  const forward = ctx.config.localFhirBaseUrl ? { maxAttempts: ctx.config.deliveryMaxAttempts } : undefined;
  const indexes = (items: AcceptedMessage[], stored: Map<string, number>) => items.map((i) => stored.get(i.row.id));
  const pool = commitPool(ctx.pool);
  const write = async (items: AcceptedMessage[]) => {
    if (!responses || !items.some((i) => i.row.response))
      return indexes(items, await writeInboxMessages(pool, items, { forward }));
    return inTransaction(pool, async (tx) => {
      const stored = await writeInboxMessages(tx, items, { forward });
      for (const { row } of items)
        if (row.response && stored.has(row.id))
          await responses.record(tx, { ...row.response, messageId: row.id, at: row.receivedAt, sender: row.sender });
      return indexes(items, stored);
    });
  };
  return new GroupCommit<AcceptedMessage, number | undefined>(
    (items) => write(items).catch((err: unknown) => (isConcurrentReplay(err) ? write(items) : Promise.reject(err))),
    {
      maxItems: 100,
      maxWeight: 32 * 1024 * 1024,
      weight: (i) => i.row.envelope.length,
      // One batch at a time, as intake: a statement's fixed cost is most of a small batch's, and a second
      // batch would only wait on the audit_head lock.
      maxInFlight: 1,
    },
  );
}

/**
 * POST /inbox: open the envelope with our HSM-held key, verify the sender's
 * signature against its published key, check aud / iat / replay, store the
 * envelope exactly as received (still sealed), audit, and answer with our
 * signed receipt. Any refusal is audited and stores no message. Protocol v2
 * (hybrid envelope, dual signature) is answered with a dual-signed receipt;
 * which version a message may use is src/protocol/v2-acceptance.ts.
 */
export function inboxReceiver(
  ctx: InboxContext,
  resolveKey: DecryptionKeyResolver = gatewayDecryptionKeys(ctx.keyring),
  options: { responses?: ResponseCorrelation } = {},
) {
  const writer = inboxWriter(ctx, options.responses);
  const resolveKemKey = gatewayKemKeys(ctx.keyring);
  async function receive(envelope: string, meta: ReceiveMeta = {}): Promise<ReceiveResult> {
    const digest = envelopeDigest(envelope);
    const now = meta.now ?? new Date();
    let verified: VerifiedContent | undefined;
    try {
      const protocol = envelopeVersion(envelope);
      const opened = await openWithGatewayKeys(ctx.keyring, envelope, {
        hsm: ctx.hsm,
        kdf: ctx.config.hsmKdf,
        resolveKey,
        protocol,
        resolveKemKey,
      });
      try {
        const jws = opened.plaintext.toString('utf8');
        requireSignatureForm(protocol, jws, 'envelope');
        const checks: ContentChecks = {
          directory: ctx.directory,
          org: ctx.config.org,
          clockSkewMs: ctx.config.clockSkew,
          maxAgeMs: ctx.config.inboxMaxAge,
          maxDepth: ctx.config.jsonMaxDepth + 1,
          now: now.getTime(),
        };
        verified = protocol === 2 ? await verifySignedDualContent(jws, checks) : await verifySignedContent(jws, checks);
      } finally {
        opened.plaintext.fill(0);
      }
      if (verified.protocol === 1) await refuseV1Downgrade(ctx, verified, digest);
      requireBoundSender(meta, verified.claims.iss);
      await checkReceivedOrigin(verified.claims.content, verified.sender, ctx.config.org, ctx.directory);
      const response = await options.responses?.check(verified.claims);
      return await store(
        envelope,
        digest,
        required(opened.kid, 'a kid on every gateway encryption key'),
        verified,
        now,
        meta,
        response,
      );
    } catch (err) {
      if (err instanceof GatewayError && err.status < 500) {
        await auditInboxRefusal(ctx, err, { digest, signed: verified?.claims, meta, now });
        markRefusalAudited(err);
      }
      throw err;
    }
  }

  async function store(
    envelope: string,
    digest: string,
    encKid: string,
    v: VerifiedContent,
    now: Date,
    meta: ReceiveMeta,
    response: CorrelatedResponse | undefined,
  ): Promise<ReceiveResult> {
    const { iss: sender, jti } = v.claims;
    const content = v.claims.content as Record<string, unknown>;
    const messageId = uuidv7();
    // Signed before the insert so that row, receipt and audit entry commit together. The
    // insert itself is the replay check: a stored (sender, jti) makes it a no-op.
    // fresh(): a rotation in another process changes the active signing key.
    const keys = await ctx.keyring.fresh();
    const { receipt, claims: receiptClaims } = await signReceipt(
      keys.signer(),
      { iss: ctx.config.org, aud: sender, delivery: jti, digest, now },
      // A v2 message gets a v2 receipt: the same claims, signed with ES256 and ML-DSA-65.
      v.protocol === 2 ? await keys.pqSigner() : undefined,
    );
    // Whose records arrived, blinded under this gateway's own key (a partner's blinds mean nothing here).
    const patients = await blindPatients(ctx, patientIdentifiers(v.claims.content));
    const auditIndex = await writer.submit({
      row: {
        id: messageId,
        sender,
        jti,
        exchangeId: v.claims.exchange,
        envelope,
        envelopeDigest: digest,
        encKid,
        senderKid: v.senderKid,
        senderJwk: v.senderJwk,
        senderPqJwk: v.senderPq?.jwk,
        receiptId: receiptClaims.jti,
        receipt,
        receivedAt: now,
        purposeOfUse: v.purposeOfUse,
        messageHeaderId: content.type === 'message' ? messageHeaderId(content) : undefined,
        response,
      },
      audit: {
        type: 'inbox.accepted',
        outcome: 'success',
        agent: { type: 'partner', id: sender, ...(meta.remoteAddress ? { network: meta.remoteAddress } : {}) },
        entity: [
          { type: 'inbox-message', id: messageId, digest },
          { type: 'delivery', id: jti },
          { type: 'exchange', id: v.claims.exchange },
          { type: 'receipt', id: receiptClaims.jti, digest: receiptDigest(receipt) },
        ],
        detail: {
          encKid,
          senderKid: v.senderKid,
          protocol: v.protocol,
          ...(v.senderPq ? { senderPqKid: v.senderPq.kid } : {}),
        },
        ...(patients.length ? { patients } : {}),
        ...(v.purposeOfUse ? { purposeOfUse: v.purposeOfUse } : {}),
      },
    });
    if (auditIndex !== undefined) return { receipt, messageId, duplicate: false, auditIndex };
    const earlier = await findBySenderJti(ctx.pool, sender, jti);
    if (!earlier) throw new GatewayError('UNAVAILABLE', 'concurrent delivery in progress; retry', { retryAfter: 1 });
    return duplicate(ctx, earlier, digest, v, now, meta);
  }

  return Object.assign(receive, { drained: () => writer.drained() });
}

/**
 * A v1 message from a sender that could have sent v2 is refused
 * (v2-acceptance.ts), except the very envelope accepted before the sender
 * published its ML-DSA key: a retry of it still gets its first receipt.
 */
async function refuseV1Downgrade(ctx: InboxContext, v: VerifiedContent, digest: string): Promise<void> {
  const sender = { id: v.sender.id, keys: (await ctx.directory.publishedKeys(v.sender)).keys };
  // What our published JWKS lists (PROTOCOL_V2=off publishes no post-quantum keys, so every sender may keep v1).
  const ours = (await ctx.keyring.fresh()).jwks({ pq: ctx.config.protocolV2 === 'on' }).keys;
  try {
    refuseDowngrade(1, sender, ours);
  } catch (err) {
    const earlier = await findBySenderJti(ctx.pool, v.claims.iss, v.claims.jti);
    if (earlier?.envelopeDigest === digest) return;
    throw err;
  }
}

/** Same sender and jti seen before: the same bytes get the first receipt; other bytes are a replay. */
async function duplicate(
  ctx: InboxContext,
  earlier: { id: string; envelopeDigest: string; receipt: string; auditIndex?: number },
  digest: string,
  v: VerifiedContent,
  now: Date,
  meta: ReceiveMeta,
): Promise<ReceiveResult> {
  if (earlier.envelopeDigest !== digest) {
    throw new GatewayError(
      'REPLAY_CONFLICT',
      `delivery id ${v.claims.jti} was already received from ${v.claims.iss} with different content`,
      { expression: 'jti' },
    );
  }
  await appendAudit(
    ctx.pool,
    [
      {
        type: 'inbox.duplicate',
        outcome: 'success',
        agent: { type: 'partner', id: v.claims.iss, ...(meta.remoteAddress ? { network: meta.remoteAddress } : {}) },
        entity: [
          { type: 'inbox-message', id: earlier.id, digest },
          { type: 'delivery', id: v.claims.jti },
        ],
      },
    ],
    now,
  );
  return { receipt: earlier.receipt, messageId: earlier.id, duplicate: true, auditIndex: earlier.auditIndex };
}

/**
 * A refusal decided before receive() ran (wrong media type, oversize body):
 * audited like the others; the envelope's digest only when its bytes were read.
 */
export async function auditEarlyRefusal(
  ctx: InboxContext,
  err: GatewayError,
  body: string | undefined,
  meta: ReceiveMeta,
): Promise<void> {
  await auditInboxRefusal(ctx, err, {
    digest: body === undefined ? undefined : envelopeDigest(body),
    signed: undefined,
    meta,
    now: meta.now ?? new Date(),
  });
}

/**
 * The one audit entry of a refused delivery, for both payload kinds. Who sent
 * it is only known once a signature verified; before that the peer is anonymous.
 */
export async function auditInboxRefusal(
  ctx: InboxContext,
  err: GatewayError,
  refused: {
    digest: string | undefined;
    signed: { iss: string; jti: string } | undefined;
    content?: 'imaging';
    meta: ReceiveMeta;
    now: Date;
  },
): Promise<void> {
  const { digest, signed, meta } = refused;
  const network = meta.remoteAddress ? { network: meta.remoteAddress } : {};
  const entry: AuditInput = {
    type: 'inbox.refused',
    outcome: 'minor-failure',
    agent: signed
      ? { type: 'partner', id: signed.iss, ...network }
      : { type: 'anonymous', id: 'unauthenticated', ...network },
    entity: [
      ...(digest ? [{ type: 'envelope', id: digest, digest }] : []),
      ...(signed ? [{ type: 'delivery', id: signed.jti }] : []),
    ],
    detail: { ...(refused.content ? { content: refused.content } : {}), reason: err.code, status: err.status },
  };
  await keepRefusal(ctx.logger, entry.type, () => appendAudit(ctx.pool, [entry], refused.now));
}
