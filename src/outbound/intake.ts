import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { AuditInput } from '../audit/append.ts';
import { appendAudit } from '../audit/append.ts';
import type { GatewayContext } from '../gateway-context.ts';
import { commitPool, inTransaction } from '../db/pool.ts';
import { GatewayError } from '../errors.ts';
import { checkBundle } from '../fhir/bundle.ts';
import {
  messageHeaderId,
  messageKey,
  messageReasonCodings,
  messageReceivers,
  messageResponse,
} from '../fhir/message-header.ts';
import { purposeFromHeader, purposeFromReason, submissionPurpose } from '../fhir/purpose-of-use.ts';
import { GroupCommit } from '../db/batcher.ts';
import {
  findByIdempotencyKey,
  writeIntakes,
  type IntakeRecord,
  type IntakeWritten,
  type SealedDelivery,
} from './intake-store.ts';
import { PROTOCOL } from '../protocol/wire.ts';
import { uuidv7 } from '../ids.ts';
import {
  checkIdempotencyKey,
  explicitRecipients,
  resolveRecipients,
  signAndSeal,
  type WantedRecipient,
} from './submission.ts';
import { IDEMPOTENCY_KEY, messageRepeat, replayMismatch } from './idempotency.ts';
import { checkMessageOrigin, ourOrganisation } from './message-origin.ts';
import { patientIdentifiers } from '../fhir/patient-identifiers.ts';
import { blindPatients } from '../compliance/blind.ts';
import { checkResponseRecipients, responseRoute, type FindAnswered } from './response-routing.ts';

export interface Submission {
  clientId: string;
  idempotencyKey?: string;
  /** The body exactly as received (it is signed verbatim). */
  raw: string;
  /** The same body, parsed (depth and prototype guarded). */
  bundle: unknown;
  /** 'message': recipients from MessageHeader.destination; else the explicit list. */
  recipients: { from: 'message' } | { from: 'explicit'; ids: string[] };
  /** The client's network address, for the audit trail. */
  remoteAddress?: string;
  /** The Purpose-Of-Use request header as received, if any. */
  purposeHeader?: string | string[];
  /** The purpose the client's registration gives when a submission states none. */
  clientPurposeOfUse?: readonly string[];
  /** Finds the received message a response message answers (among those this client may see). */
  answered?: FindAnswered;
  /** Where the exchange's state changes go as response messages ($process-message `response-url`, already checked). */
  responseUrl?: string | undefined;
}

export interface Accepted extends IntakeWritten {
  deliveries: number;
}

/** The batched writer: one transaction per group of concurrent submissions. */
export class IntakeWriter {
  readonly #batch: GroupCommit<IntakeRecord, IntakeWritten>;
  constructor(pool: pg.Pool, options: { maxItems?: number; maxBytes?: number } = {}) {
    const commit = commitPool(pool);
    this.#batch = new GroupCommit((records) => writeIntakes(commit, records), {
      maxItems: options.maxItems ?? 100,
      maxWeight: options.maxBytes ?? 32 * 1024 * 1024,
      weight: (r) => r.deliveries.reduce((n, d) => n + d.envelope.length, 0),
      // One batch at a time: the next gathers all that arrives during this commit (a second
      // concurrent batch would only queue on the audit_head lock; BENCHMARKS.md).
      maxInFlight: 1,
    });
  }
  write(record: IntakeRecord): Promise<IntakeWritten> {
    return this.#batch.submit(record);
  }
  drained(): Promise<void> {
    return this.#batch.drained();
  }
}

/** The recipients a submission names: MessageHeader.destination for a message, else the explicit list. */
function wantedRecipients(s: Submission, bundle: Record<string, unknown>): WantedRecipient[] {
  if (s.recipients.from === 'explicit') return explicitRecipients(s.recipients.ids);
  const destinations = messageReceivers(bundle);
  // R4 allows a MessageHeader without destination; the gateway then has no one to send it to.
  if (destinations.length === 0)
    throw new GatewayError(
      'BAD_REQUEST',
      messageResponse(bundle)
        ? 'the MessageHeader names no destination, and its response.identifier names no message this client received: answer a received message by its MessageHeader.id, or name the recipients'
        : 'the MessageHeader names no destination: name the recipients there, or send the message to POST /exchanges?recipient=PARTNER_ID',
      { expression: 'Bundle.entry[0].resource.destination' },
    );
  return destinations.map((d) => ({
    ...(d.receiver ? { receiver: d.receiver } : {}),
    refs: d.endpoint ? [d.endpoint] : [],
    expression: `Bundle.entry[0].resource.destination[${d.index}]`,
  }));
}

/** The earlier exchange this one repeats: by the Idempotency-Key first, else by the message's own identity. */
async function firstSubmission(
  db: pg.Pool,
  clientId: string,
  idempotencyKey: string | undefined,
  message: { key: string; expression: string } | undefined,
) {
  const byKey = idempotencyKey ? await findByIdempotencyKey(db, clientId, idempotencyKey) : undefined;
  if (byKey) return { first: byKey, by: IDEMPOTENCY_KEY };
  const byMessage = message ? await findByIdempotencyKey(db, clientId, message.key, 'message_key') : undefined;
  return byMessage && message ? { first: byMessage, by: messageRepeat(message) } : undefined;
}

/**
 * Accept a FHIR submission: validate it, resolve its recipients, sign the
 * claims once per recipient in the HSM (aud bound), seal each to the
 * recipient's current key, and write everything in one (group) commit.
 */
export async function acceptSubmission(
  ctx: Pick<GatewayContext, 'config' | 'directory' | 'keyring' | 'pool' | 'hsm'>,
  writer: IntakeWriter,
  s: Submission,
): Promise<Accepted> {
  checkIdempotencyKey(s.idempotencyKey);
  const summary = checkBundle(s.bundle);
  if (s.recipients.from === 'message' && summary.type !== 'message') {
    throw new GatewayError(
      'INVALID_FHIR',
      `$process-message takes a Bundle of type message, not ${summary.type}; send other bundles to POST /exchanges?recipient=…`,
      { expression: 'Bundle.type' },
    );
  }
  const bundle = s.bundle as Record<string, unknown>;
  const purposeOfUse = submissionPurpose(
    {
      header: purposeFromHeader(s.purposeHeader),
      reason: summary.type === 'message' ? purposeFromReason(messageReasonCodings(bundle)) : undefined,
    },
    s.clientPurposeOfUse,
  );
  const contentDigest = 'sha-256=' + createHash('sha256').update(s.raw, 'utf8').digest('base64url');
  // A response goes back to the partner whose message it answers; its destination is not used for routing.
  const response = summary.type === 'message' ? await responseRoute(bundle, s.answered) : undefined;
  const recipients = await resolveRecipients(
    ctx,
    response && s.recipients.from === 'message' ? response.wanted : wantedRecipients(s, bundle),
  );
  if (response) checkResponseRecipients(response, recipients);
  const message = summary.type === 'message' ? messageKey(s.bundle as Record<string, unknown>) : undefined;
  if (summary.type === 'message')
    await checkMessageOrigin(ourOrganisation(ctx.config), s.bundle as Record<string, unknown>, ctx.directory);
  const repeat = await firstSubmission(ctx.pool, s.clientId, s.idempotencyKey, message);
  if (repeat) {
    const mismatch = await replayMismatch(
      ctx.pool,
      'deliveries',
      repeat.first,
      { contentDigest, partnerIds: recipients.map((r) => r.partner.id), purposeOfUse },
      repeat.by,
    );
    if (mismatch) throw mismatch;
    return { exchangeId: repeat.first.id, replayed: true, deliveries: 0 };
  }
  const keyring = await ctx.keyring.fresh();
  const signers = { signer: keyring.signer('sig'), pq: () => keyring.pqSigner() };
  // Whose records these are, blinded in the HSM: the accounting of disclosures finds them by it.
  const patients = await blindPatients(ctx, patientIdentifiers(s.bundle));
  const named = patients.length ? { patients } : {};
  const exchangeId = uuidv7();
  const iat = Math.floor(Date.now() / 1000);
  const client = {
    type: 'client' as const,
    id: s.clientId || 'anonymous',
    ...(s.remoteAddress ? { network: s.remoteAddress } : {}),
  };
  const audit: AuditInput[] = [
    {
      type: 'intake.accepted',
      outcome: 'success',
      agent: client,
      entity: [
        { type: 'exchange', id: exchangeId, digest: contentDigest },
        ...(response ? [{ type: 'inbox-message', id: response.answered.messageId }] : []),
      ],
      detail: {
        bundleType: summary.type,
        entries: summary.entries,
        recipients: recipients.length,
        bytes: Buffer.byteLength(s.raw),
        ...(response ? { response: response.code } : {}),
      },
      ...named,
      purposeOfUse,
    },
  ];
  const envelope = {
    iss: ctx.config.org,
    iat,
    exchangeId,
    exchangeEntity: 'exchange',
    contentType: PROTOCOL.fhirContentType,
    contentJson: s.raw,
    purposeOfUse,
    responseTo: response && { delivery: response.answered.delivery, exchange: response.answered.exchange },
  };
  const deliveries: SealedDelivery[] = await Promise.all(
    recipients.map(async (r) => {
      const sealed = await signAndSeal(signers, r, envelope, named);
      audit.push(...sealed.audit);
      return {
        id: r.deliveryId,
        partnerId: r.partner.id,
        kid: r.key.kid,
        envelope: sealed.envelope,
        envelopeDigest: sealed.digest,
        protocol: sealed.protocol,
      };
    }),
  );
  const written = await writer.write({
    exchange: {
      id: exchangeId,
      clientId: s.clientId,
      bundleType: summary.type,
      contentDigest,
      contentLength: Buffer.byteLength(s.raw),
      idempotencyKey: s.idempotencyKey ?? null,
      messageKey: message ?? null,
      purposeOfUse,
      messageHeaderId: summary.type === 'message' ? (messageHeaderId(bundle) ?? null) : null,
      responseUrl: s.responseUrl ?? null,
    },
    deliveries,
    audit,
  });
  return { ...written, deliveries: written.replayed ? 0 : deliveries.length };
}

/** Record a refused submission (its own small transaction): codes only, never content. */
export async function auditIntakeRefusal(
  pool: pg.Pool,
  clientId: string | undefined,
  code: string,
  status: number,
  route: string,
  remoteAddress?: string,
): Promise<void> {
  await inTransaction(pool, (db) =>
    appendAudit(db, [
      {
        type: 'intake.refused',
        outcome: 'minor-failure',
        agent: {
          type: clientId ? 'client' : 'anonymous',
          id: clientId ?? 'unknown',
          ...(remoteAddress ? { network: remoteAddress } : {}),
        },
        detail: { code, status, route },
      },
    ]),
  );
}
