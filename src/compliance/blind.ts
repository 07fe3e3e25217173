import type { AuditInput } from '../audit/append.ts';
import type { GatewayContext } from '../gateway-context.ts';
import { normalisedIdentifier, type PatientIdentifier } from '../fhir/patient-identifiers.ts';

/** One blinded identifier as an audit entry names it: the HMAC (base64url) and the kid of the key that made it. */
export type BlindedPatient = NonNullable<AuditInput['patients']>[number];

type Ctx = Pick<GatewayContext, 'keyring' | 'hsm'>;

/** Messages per session borrow: a Bundle naming many patients does not hold one HSM session for long. */
const PER_CALL = 64;

async function blindUnder(ctx: Ctx, key: { hsm_id: string; kid: string }, ids: readonly PatientIdentifier[]) {
  const texts = ids.map((id) => Buffer.from(normalisedIdentifier(id), 'utf8'));
  const out: BlindedPatient[] = [];
  for (let i = 0; i < texts.length; i += PER_CALL)
    for (const mac of await ctx.hsm.hmacSha256(key.hsm_id, texts.slice(i, i + PER_CALL)))
      out.push({ blind: mac.toString('base64url'), key: key.kid });
  return out;
}

/**
 * The blinds a new audit entry carries: HMAC-SHA-256 of each normalised
 * identifier under the active blinding key, inside the HSM (one HMAC per
 * identifier). Nothing of the identifier itself is kept.
 */
export async function blindPatients(ctx: Ctx, ids: readonly PatientIdentifier[]): Promise<BlindedPatient[]> {
  if (ids.length === 0) return [];
  return blindUnder(ctx, (await ctx.keyring.fresh()).active('blinding'), ids);
}

/**
 * The blinds to look an identifier up by: one under every blinding key still
 * on the token (the active one first), since each entry carries the blind of
 * the key that was active when it was written.
 */
export async function lookupBlinds(ctx: Ctx, ids: readonly PatientIdentifier[]): Promise<BlindedPatient[]> {
  const out: BlindedPatient[] = [];
  for (const key of (await ctx.keyring.fresh()).blindingKeys()) out.push(...(await blindUnder(ctx, key, ids)));
  return out;
}
