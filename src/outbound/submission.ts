import type { AuditInput } from '../audit/append.ts';
import type { GatewayContext } from '../gateway-context.ts';
import type { Partner, PartnerJwk } from '../directory/directory.ts';
import { GatewayError } from '../errors.ts';
import { signCompact } from '../jose/jws.ts';
import { signDual, type PqSigner } from '../jose/pq/dual-jws.ts';
import { sealHybridCompact } from '../jose/pq/hybrid-jwe.ts';
import { sealCompact } from '../jose/seal.ts';
import type { Signer } from '../jose/signer.ts';
import type { AkpPublicJwk } from '../keys/pq-keys.ts';
import { negotiate } from '../protocol/v2-negotiation.ts';
import { clearDowngradeAllowance, decideDowngrade, holdForDowngrade } from './partner-suspension.ts';
import type { ProtocolVersion } from '../protocol/v2-acceptance.ts';
import { claimsPayload, envelopeDigest, PROTOCOL } from '../protocol/wire.ts';
import { isPlainIdentifier, uuidv7 } from '../ids.ts';
import { formatIdentifier, identifierNames, PARTNER_ID_SYSTEM, type OrgIdentifier } from '../fhir/message-header.ts';

/**
 * The submission step both payload kinds share: the Idempotency-Key rule,
 * recipient resolution, one record per recipient, and the signed and
 * sealed envelope with its per-recipient audit entries.
 */
export const MAX_RECIPIENTS = 50;
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

export function checkIdempotencyKey(key: string | undefined): void {
  if (key !== undefined && !IDEMPOTENCY_KEY.test(key))
    throw new GatewayError('BAD_REQUEST', 'Idempotency-Key must be 1 to 255 printable ASCII characters', {
      expression: 'Idempotency-Key',
    });
}

/**
 * A recipient as the client named it, and where: a receiver identifier
 * (MessageHeader.destination.receiver.identifier, matched by system and
 * value), else partner ids or endpoints; first match wins.
 */
export interface WantedRecipient {
  receiver?: OrgIdentifier;
  refs: string[];
  expression: string;
}

/** A receiver identifier without a system (or under the partner-id system) is a partner id or inbox URL, as before systems were matched. */
const plainRefs = (w: WantedRecipient): string[] =>
  w.receiver && (w.receiver.system === undefined || w.receiver.system === PARTNER_ID_SYSTEM)
    ? [w.receiver.value, ...w.refs]
    : w.refs;

export const explicitRecipients = (ids: string[]): WantedRecipient[] =>
  ids.map((id, i) => ({ refs: [id], expression: `recipient[${i}]` }));

/** One recipient of a submission: the partner, its current encryption key and the delivery id it gets. */
export interface Recipient {
  partner: Partner;
  key: PartnerJwk & { kid: string };
  /** Protocol v2: the partner's ML-KEM-768 and ML-DSA-65 keys; absent for v1. */
  pq?: { kem: AkpPublicJwk; sig: AkpPublicJwk } | undefined;
  /** Sealed as v1 to a partner held after a downgrade: stored, but not sent until an operator allows it. */
  held?: boolean;
  deliveryId: string;
}

type NegotiationContext = Pick<GatewayContext, 'directory' | 'config' | 'pool'>;

/**
 * Which protocol a delivery to this partner uses (src/protocol/v2-negotiation.ts),
 * recording the downgrade state when it changes: held under PQ_DOWNGRADE=hold,
 * allowed (audited as the policy's decision) under allow-v1.
 */
async function protocolFor(ctx: NegotiationContext, partner: Partner): Promise<Pick<Recipient, 'pq' | 'held'>> {
  if (ctx.config.protocolV2 === 'off') return {};
  const gateway = { type: 'gateway' as const, id: ctx.config.org };
  const { keys } = await ctx.directory.publishedKeys(partner);
  const wasPq = await ctx.directory.hasPublishedPqKeys(partner.id);
  const n = negotiate(keys, { wasPq, operatorAllowsV1: partner.pqDowngrade === 'allow-v1' }, ctx.config.pqDowngrade);
  if (n.version === 2) {
    if (partner.pqDowngrade === 'allow-v1') await changed(ctx, clearDowngradeAllowance(ctx.pool, partner.id));
    return { pq: { kem: n.kem, sig: n.sig } };
  }
  if (n.version === 'held') {
    if (partner.pqDowngrade !== 'held') await changed(ctx, holdForDowngrade(ctx.pool, partner.id, gateway));
    return { held: true };
  }
  if (n.downgraded && partner.pqDowngrade !== 'allow-v1')
    await changed(ctx, decideDowngrade(ctx.pool, partner.id, 'allow-v1', gateway, 'policy'));
  return {};
}

const changed = async (ctx: NegotiationContext, change: Promise<unknown>): Promise<void> => {
  await change;
  ctx.directory.forget();
};

/** The active partners a submission goes to, each once, with their keys and fresh delivery ids. */
export async function resolveRecipients(ctx: NegotiationContext, wanted: WantedRecipient[]): Promise<Recipient[]> {
  if (wanted.length === 0)
    throw new GatewayError('BAD_REQUEST', 'name at least one recipient (?recipient=PARTNER_ID)', {
      expression: 'recipient',
    });
  if (wanted.length > MAX_RECIPIENTS)
    throw new GatewayError('BAD_REQUEST', `at most ${MAX_RECIPIENTS} recipients per submission`, {
      expression: 'recipient',
    });
  for (const w of wanted)
    if (
      ![...plainRefs(w), w.receiver?.system ?? '', w.receiver?.value ?? ''].every(
        (r) => r === '' || isPlainIdentifier(r),
      )
    )
      throw new GatewayError('INVALID_VALUE', 'a recipient is a partner id or inbox URL without control characters', {
        expression: w.expression,
      });
  const systemIds = wanted.flatMap((w) =>
    w.receiver?.system === undefined ? [] : [w.receiver as Required<OrgIdentifier>],
  );
  const partners = await ctx.directory.resolve([...new Set(wanted.flatMap(plainRefs))], systemIds);
  const chosen = new Map<string, Partner>();
  for (const w of wanted) {
    // The receiver identifier first: it names the organisation; the endpoint only locates it.
    const byIdentifier = w.receiver ? partners.find((x) => identifierNames(w.receiver as OrgIdentifier, x)) : undefined;
    const p =
      byIdentifier ??
      plainRefs(w)
        .map((r) => partners.find((x) => x.id === r) ?? partners.find((x) => x.endpoint === r))
        .find((x) => x);
    if (!p)
      throw new GatewayError(
        'UNKNOWN_RECIPIENT',
        `recipient ${JSON.stringify(w.receiver ? formatIdentifier(w.receiver) : w.refs[0])} is not a partner in the directory`,
        { expression: w.expression },
      );
    if (p.status !== 'active')
      throw new GatewayError('UNKNOWN_RECIPIENT', `partner ${p.id} is suspended`, { expression: w.expression });
    chosen.set(p.id, p);
  }
  return Promise.all(
    [...chosen.values()].map(async (partner) => ({
      partner,
      key: await ctx.directory.encryptionKey(partner),
      ...(await protocolFor(ctx, partner)),
      deliveryId: uuidv7(),
    })),
  );
}

export interface Envelope {
  iss: string;
  iat: number;
  exchangeId: string;
  /** The audit entity type of the exchange ('exchange', 'imaging-exchange'). */
  exchangeEntity: string;
  contentType: string;
  /** The signed content (a Bundle, or an imaging manifest), as JSON text. */
  contentJson: string;
  /** Why it is disclosed (HL7 PurposeOfUse codes): signed, so the recipient records it too. */
  purposeOfUse: string[];
  /** A response message: the delivery and exchange of the message it answers, as received (signed). */
  responseTo?: { delivery: string; exchange: string } | undefined;
}

/**
 * Sign the claims for one recipient (aud bound) in the HSM, seal them to its
 * key, and say so in the audit. The sealed entry is the disclosure itself:
 * it names the delivery, its exchange and recipient, and (for a Bundle) the
 * blinded patients, so the accounting of disclosures proves each from that
 * one entry.
 */
/** The gateway's signing keys for one submission: ES256 in the HSM, and ML-DSA-65 for v2 recipients. */
export interface ContentSigners {
  signer: Signer;
  pq: () => Promise<PqSigner>;
}

export async function signAndSeal(
  signers: ContentSigners,
  r: Recipient,
  e: Envelope,
  sealedAudit: {
    entity?: NonNullable<AuditInput['entity']>;
    detail?: NonNullable<AuditInput['detail']>;
    patients?: AuditInput['patients'];
  } = {},
): Promise<{ envelope: string; digest: string; protocol: ProtocolVersion; audit: AuditInput[] }> {
  const id = r.deliveryId;
  const payload = claimsPayload(
    {
      iss: e.iss,
      aud: r.partner.id,
      iat: e.iat,
      jti: id,
      exchange: e.exchangeId,
      response_to: e.responseTo?.delivery,
      response_exchange: e.responseTo?.exchange,
      content_type: e.contentType,
      purpose_of_use: e.purposeOfUse,
    },
    e.contentJson,
  );
  const { signer } = signers;
  const header = { typ: PROTOCOL.contentTyp };
  const pq = r.pq ? await signers.pq() : undefined;
  const signed = pq ? await signDual(signer, pq, payload, header) : await signCompact(signer, payload, header);
  const envelope = r.pq ? sealHybridCompact(signed, r.key, r.pq.kem) : sealCompact(signed, r.key);
  const digest = envelopeDigest(envelope);
  const gateway = { type: 'gateway' as const, id: e.iss };
  const audit: AuditInput[] = [
    {
      type: 'exchange.signed',
      outcome: 'success',
      agent: gateway,
      entity: [
        { type: 'delivery', id },
        { type: e.exchangeEntity, id: e.exchangeId },
      ],
      detail: {
        kid: signer.kid,
        partner: r.partner.id,
        protocol: pq ? 2 : 1,
        ...(pq ? { pqKid: pq.kid } : {}),
        ...(r.held ? { held: true } : {}),
      },
      purposeOfUse: e.purposeOfUse,
    },
    {
      type: 'exchange.sealed',
      outcome: 'success',
      agent: gateway,
      entity: [
        { type: 'delivery', id, digest },
        { type: e.exchangeEntity, id: e.exchangeId },
        ...(sealedAudit.entity ?? []),
      ],
      detail: {
        recipientKid: r.key.kid,
        ...(r.pq ? { recipientKemKid: r.pq.kem.kid } : {}),
        partner: r.partner.id,
        ...sealedAudit.detail,
      },
      ...(sealedAudit.patients?.length ? { patients: sealedAudit.patients } : {}),
      purposeOfUse: e.purposeOfUse,
    },
  ];
  return { envelope, digest, protocol: pq ? 2 : 1, audit };
}
