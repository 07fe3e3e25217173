import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { AuditInput } from '../audit/append.ts';
import { appendAudit } from '../audit/append.ts';
import type { GatewayContext } from '../gateway-context.ts';
import { inTransaction } from '../db/pool.ts';
import type { Partner } from '../directory/directory.ts';
import { GatewayError } from '../errors.ts';
import { checkBundle, messageDestinations } from '../fhir/bundle.ts';
import { signCompact } from '../jose/jws.ts';
import { sealCompact } from '../jose/seal.ts';
import { GroupCommit } from '../db/batcher.ts';
import {
  findByIdempotencyKey,
  idempotencyMismatch,
  writeIntakes,
  type IntakeRecord,
  type IntakeWritten,
  type SealedDelivery,
} from './intake-store.ts';
import { PROTOCOL, claimsPayload, envelopeDigest } from '../protocol/wire.ts';
import { uuidv7 } from '../ids.ts';

export const MAX_RECIPIENTS = 50;
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

export interface Submission {
  clientId: string;
  idempotencyKey?: string;
  /** The body exactly as received (it is signed verbatim). */
  raw: string;
  /** The same body, parsed (depth and prototype guarded). */
  bundle: unknown;
  /** 'message': recipients from MessageHeader.destination; else the explicit list. */
  recipients: { from: 'message' } | { from: 'explicit'; ids: string[] };
}

export interface Accepted extends IntakeWritten {
  deliveries: number;
}

/** The batched writer: one transaction per group of concurrent submissions. */
export class IntakeWriter {
  readonly #batch: GroupCommit<IntakeRecord, IntakeWritten>;
  constructor(pool: pg.Pool, options: { maxItems?: number; maxBytes?: number } = {}) {
    this.#batch = new GroupCommit((records) => writeIntakes(pool, records), {
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

/** The partners a submission goes to, each once, with the element that named it for error messages. */
async function recipientsOf(
  ctx: Pick<GatewayContext, 'directory'>,
  s: Submission,
  bundle: Record<string, unknown>,
): Promise<Partner[]> {
  const wanted: Array<{ refs: string[]; expression: string }> =
    s.recipients.from === 'message'
      ? messageDestinations(bundle).map((d) => ({
          refs: d.receiver ? [d.receiver, d.endpoint] : [d.endpoint],
          expression: `Bundle.entry[0].resource.destination[${d.index}]`,
        }))
      : s.recipients.ids.map((id, i) => ({ refs: [id], expression: `recipient[${i}]` }));
  if (wanted.length === 0)
    throw new GatewayError('BAD_REQUEST', 'name at least one recipient (?recipient=PARTNER_ID)', {
      expression: 'recipient',
    });
  if (wanted.length > MAX_RECIPIENTS)
    throw new GatewayError('BAD_REQUEST', `at most ${MAX_RECIPIENTS} recipients per submission`, {
      expression: 'recipient',
    });
  const partners = await ctx.directory.resolve([...new Set(wanted.flatMap((w) => w.refs))]);
  const chosen = new Map<string, Partner>();
  for (const w of wanted) {
    // receiver.identifier.value first: it names the organisation; the endpoint only locates it.
    const p = w.refs
      .map((r) => partners.find((x) => x.id === r) ?? partners.find((x) => x.endpoint === r))
      .find((x) => x);
    if (!p)
      throw new GatewayError(
        'UNKNOWN_RECIPIENT',
        `recipient ${JSON.stringify(w.refs[0])} is not a partner in the directory`,
        { expression: w.expression },
      );
    if (p.status !== 'active')
      throw new GatewayError('UNKNOWN_RECIPIENT', `partner ${p.id} is suspended`, { expression: w.expression });
    chosen.set(p.id, p);
  }
  return [...chosen.values()];
}

/**
 * Accept a FHIR submission: validate it, resolve its recipients, sign the
 * claims once per recipient in the HSM (aud bound), seal each to the
 * recipient's current key, and write everything in one (group) commit.
 */
export async function acceptSubmission(
  ctx: Pick<GatewayContext, 'config' | 'directory' | 'keyring' | 'pool'>,
  writer: IntakeWriter,
  s: Submission,
): Promise<Accepted> {
  if (s.idempotencyKey !== undefined && !IDEMPOTENCY_KEY.test(s.idempotencyKey)) {
    throw new GatewayError('BAD_REQUEST', 'Idempotency-Key must be 1 to 255 printable ASCII characters', {
      expression: 'Idempotency-Key',
    });
  }
  const summary = checkBundle(s.bundle);
  if (s.recipients.from === 'message' && summary.type !== 'message') {
    throw new GatewayError(
      'INVALID_FHIR',
      `$process-message takes a Bundle of type message, not ${summary.type}; send other bundles to POST /exchanges?recipient=…`,
      { expression: 'Bundle.type' },
    );
  }
  const contentDigest = 'sha-256=' + createHash('sha256').update(s.raw, 'utf8').digest('base64url');
  if (s.idempotencyKey) {
    const first = await findByIdempotencyKey(ctx.pool, s.clientId, s.idempotencyKey);
    if (first) {
      if (first.contentDigest !== contentDigest) throw idempotencyMismatch();
      return { exchangeId: first.id, replayed: true, deliveries: 0 };
    }
  }
  const partners = await recipientsOf(ctx, s, s.bundle as Record<string, unknown>);
  const keys = await Promise.all(partners.map((p) => ctx.directory.encryptionKey(p)));
  const signer = (await ctx.keyring.fresh()).signer('sig');
  const exchangeId = uuidv7();
  const iat = Math.floor(Date.now() / 1000);
  const client = { type: 'client' as const, id: s.clientId || 'anonymous' };
  const audit: AuditInput[] = [
    {
      type: 'intake.accepted',
      outcome: 'success',
      agent: client,
      entity: [{ type: 'exchange', id: exchangeId, digest: contentDigest }],
      detail: {
        bundleType: summary.type,
        entries: summary.entries,
        recipients: partners.length,
        bytes: Buffer.byteLength(s.raw),
      },
    },
  ];
  const deliveries: SealedDelivery[] = await Promise.all(
    partners.map(async (p, i) => {
      const id = uuidv7();
      const payload = claimsPayload(
        { iss: ctx.config.org, aud: p.id, iat, jti: id, exchange: exchangeId, content_type: PROTOCOL.fhirContentType },
        s.raw,
      );
      const jws = await signCompact(signer, payload, { typ: PROTOCOL.contentTyp });
      const envelope = sealCompact(jws, keys[i]!);
      const digest = envelopeDigest(envelope);
      audit.push(
        {
          type: 'exchange.signed',
          outcome: 'success',
          agent: { type: 'gateway', id: ctx.config.org },
          entity: [
            { type: 'delivery', id },
            { type: 'exchange', id: exchangeId },
          ],
          detail: { kid: signer.kid, partner: p.id },
        },
        {
          type: 'exchange.sealed',
          outcome: 'success',
          agent: { type: 'gateway', id: ctx.config.org },
          entity: [{ type: 'delivery', id, digest }],
          detail: { recipientKid: keys[i]!.kid, partner: p.id },
        },
      );
      return { id, partnerId: p.id, kid: keys[i]!.kid, envelope, envelopeDigest: digest };
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
): Promise<void> {
  await inTransaction(pool, (db) =>
    appendAudit(db, [
      {
        type: 'intake.refused',
        outcome: 'minor-failure',
        agent: { type: clientId ? 'client' : 'anonymous', id: clientId ?? 'unknown' },
        detail: { code, status, route },
      },
    ]),
  );
}
