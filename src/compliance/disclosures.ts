import type { GatewayContext } from '../gateway-context.ts';
import { GatewayError } from '../errors.ts';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import { issueCheckpoint, latestCheckpoint, logOrigin } from '../audit/checkpoint.ts';
import { auditKeys, toEvidenceCheckpoint } from '../audit/export.ts';
import { TreeReader } from '../audit/tree.ts';
import { toBase64 } from '../audit/verifier/note.ts';
import {
  DISCLOSURE_ENTRY,
  DISCLOSURE_FORMAT,
  INTAKE_ENTRY,
  disclosureFacts,
  readEntry,
  receiptFacts,
  type DisclosureLine,
  type DisclosureReport,
  type EntryView,
  type ProvenEntry,
} from '../audit/verifier/disclosures.ts';
import { inTransaction } from '../db/pool.ts';
import { parseFhirDate, type FhirDate } from '../fhir/dates.ts';
import { normalise, type PatientIdentifier } from '../fhir/patient-identifiers.ts';
import { isPlainText, isUuid } from '../ids.ts';
import { lookupBlinds, type BlindedPatient } from './blind.ts';

type Ctx = Pick<GatewayContext, 'pool' | 'keyring' | 'hsm' | 'config'>;

/** One accounting request: whose disclosures, over which period [start, end). */
export interface DisclosureQuery {
  identifier: PatientIdentifier;
  start: Date;
  end: Date;
}

/** HIPAA's accounting covers the six years before the request: the period when none is given. */
const DEFAULT_YEARS = 6;
const MAX_PART = 255;

const bad = (message: string, expression: string) => new GatewayError('INVALID_VALUE', message, { expression });

/** The first instant a FHIR date covers (a day, month or year starts at 00:00 UTC). */
function startOf(d: FhirDate): Date {
  return new Date(d.precision === 'time' ? d.text : `${d.firstDay}T00:00:00Z`);
}

/** The instant just after a FHIR date: the end of its day, month or year (UTC); a time counts itself in. */
function endOf(d: FhirDate): Date {
  if (d.precision === 'time') return new Date(new Date(d.text).getTime() + 1);
  const t = new Date(`${d.firstDay}T00:00:00Z`);
  if (d.precision === 'year') t.setUTCFullYear(t.getUTCFullYear() + 1);
  else if (d.precision === 'month') t.setUTCMonth(t.getUTCMonth() + 1);
  else t.setUTCDate(t.getUTCDate() + 1);
  return t;
}

/**
 * An accounting request as a person sends it: `system` and `value` of the
 * identifier (an empty system names an identifier without one) and an
 * optional period of FHIR dates, both ends included (`to` to the end of its
 * day); without `from`, the six years before `to`. Bad input is a 400.
 */
export function parseDisclosureQuery(input: unknown, now = new Date()): DisclosureQuery {
  const body = (input && typeof input === 'object' ? input : {}) as Record<string, unknown>;
  const text = (name: string, required: boolean): string | undefined => {
    const v = body[name];
    if (v === undefined || v === null || v === '') {
      if (required) throw bad(`${name} is required`, name);
      return undefined;
    }
    if (!isPlainText(v) || v.length > MAX_PART)
      throw bad(`${name} must be text of at most ${MAX_PART} characters`, name);
    return v;
  };
  const identifier = normalise({ system: text('system', false) ?? '', value: text('value', true) ?? '' });
  if (identifier.value === '') throw bad('value is required', 'value');
  const date = (name: 'from' | 'to') => {
    const raw = text(name, false);
    if (raw === undefined) return undefined;
    const d = parseFhirDate(raw);
    if (!d) throw bad(`${name} must be a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD) or a dateTime with zone`, name);
    return d;
  };
  const to = date('to');
  const from = date('from');
  const end = to ? endOf(to) : now;
  const start = from
    ? startOf(from)
    : new Date(Date.UTC(end.getUTCFullYear() - DEFAULT_YEARS, end.getUTCMonth(), end.getUTCDate()));
  if (start >= end) throw bad('from must be before to', 'from');
  return { identifier, start, end };
}

/** Who asked: a signed-in person (by name) or an API client, with the network address. */
export type Requester = NonNullable<AuditInput['agent']>;

/**
 * Every audit query about a patient is itself audited, before its answer
 * leaves: the person, how they asked, and the blind of the identifier under
 * the active key (never the identifier). A failed write fails the query.
 */
export async function auditPatientQuery(
  ctx: Ctx,
  requester: Requester,
  blinds: readonly BlindedPatient[],
  detail: NonNullable<AuditInput['detail']>,
): Promise<void> {
  const active = (await ctx.keyring.fresh()).active('blinding').kid;
  await inTransaction(ctx.pool, (db) =>
    appendAudit(db, [
      {
        type: 'disclosures.queried',
        outcome: 'success',
        agent: requester,
        detail,
        patients: blinds.filter((b) => b.key === active),
      },
    ]),
  );
}

interface Stored {
  view: EntryView;
  text: string;
}

async function readEntries(ctx: Ctx, indexes: number[]): Promise<Map<number, Stored>> {
  const out = new Map<number, Stored>();
  if (indexes.length === 0) return out;
  const { rows } = await ctx.pool.query<{ idx: string; entry: string }>(
    'SELECT idx, entry FROM audit_log WHERE idx = ANY($1::bigint[])',
    [indexes],
  );
  for (const r of rows) {
    const view = readEntry(r.entry);
    if (view) out.set(Number(r.idx), { view, text: r.entry });
  }
  return out;
}

interface DeliveryState {
  state: 'pending' | 'delivered' | 'failed';
  receipt_jti: string | null;
  delivered_at: Date | null;
  receipt_audit_idx: string | null;
}

async function deliveryStates(ctx: Ctx, ids: string[]): Promise<Map<string, DeliveryState>> {
  const { rows } = await ctx.pool.query<DeliveryState & { id: string }>(
    `SELECT id::text, state, receipt_jti, delivered_at, receipt_audit_idx FROM deliveries WHERE id = ANY($1::uuid[])
     UNION ALL
     SELECT id::text, state, receipt_jti, delivered_at, receipt_audit_idx FROM imaging_deliveries WHERE id = ANY($1::uuid[])`,
    [ids.filter(isUuid)],
  );
  return new Map(rows.map((r) => [r.id, r]));
}

/**
 * The accounting of disclosures of one patient over a period, with the proof
 * of every line: the identifier is blinded under every blinding key, the
 * patient index gives the exchange.sealed entries (one per recipient of each
 * submission) and the intake.accepted entries that carry those blinds in the
 * period, the deliveries give the receipt state and the receipt's own entry,
 * and every entry used is proven in one signed checkpoint.
 */
export async function disclosureReport(
  ctx: Ctx,
  q: DisclosureQuery,
): Promise<{
  report: DisclosureReport;
  blinds: BlindedPatient[];
}> {
  const blinds = await lookupBlinds(ctx, [q.identifier]);
  const { rows: hits } = await ctx.pool.query<{ idx: string }>(
    `SELECT DISTINCT idx FROM audit_patients
      WHERE blind = ANY($1::bytea[]) AND recorded_at >= $2 AND recorded_at < $3 AND type = ANY($4::text[])`,
    [blinds.map((b) => Buffer.from(b.blind, 'base64url')), q.start, q.end, [DISCLOSURE_ENTRY, INTAKE_ENTRY]],
  );
  const stored = await readEntries(
    ctx,
    hits.map((h) => Number(h.idx)),
  );
  const views = [...stored.values()].map((s) => s.view);
  const intakes = new Map(
    views
      .filter((v) => v.type === INTAKE_ENTRY)
      .map((v) => [v.entity?.find((x) => x.type === 'exchange')?.id, v] as const),
  );
  const facts = views
    .filter((v) => v.type === DISCLOSURE_ENTRY)
    .flatMap((v) => {
      const exchange = v.entity?.find((x) => x.type === 'exchange')?.id;
      const f = disclosureFacts(v, exchange === undefined ? undefined : intakes.get(exchange));
      return f ? [f] : [];
    })
    .sort((a, b) => a.recorded.localeCompare(b.recorded) || a.entry - b.entry);
  const states = await deliveryStates(
    ctx,
    facts.map((f) => f.delivery),
  );
  const receiptEntries = await readEntries(
    ctx,
    [...states.values()].flatMap((s) => (s.receipt_audit_idx === null ? [] : [Number(s.receipt_audit_idx)])),
  );
  const { rows: partners } = await ctx.pool.query<{ id: string; name: string }>(
    'SELECT id, name FROM partners WHERE id = ANY($1::text[])',
    [[...new Set(facts.map((f) => f.recipient))]],
  );
  const names = new Map(partners.map((p) => [p.id, p.name]));
  const used = new Set<number>();
  const lines: DisclosureLine[] = facts.map((f) => {
    used.add(f.entry);
    if (f.intakeEntry !== undefined) used.add(f.intakeEntry);
    const s = states.get(f.delivery);
    const receiptAt = s?.receipt_audit_idx === null || !s ? undefined : Number(s.receipt_audit_idx);
    const receiptEntry = receiptAt === undefined ? undefined : receiptEntries.get(receiptAt);
    const proven = receiptEntry ? receiptFacts(receiptEntry.view, f.delivery) : undefined;
    let receipt: DisclosureLine['receipt'];
    if (proven && receiptAt !== undefined) {
      used.add(receiptAt);
      receipt = { status: 'received', id: proven.id, at: proven.at, entry: receiptAt };
    } else if (s?.state === 'delivered')
      receipt = {
        status: 'received',
        ...(s.receipt_jti ? { id: s.receipt_jti } : {}),
        ...(s.delivered_at ? { at: s.delivered_at.toISOString() } : {}),
      };
    else receipt = { status: s?.state === 'failed' ? 'failed' : 'pending' };
    const name = names.get(f.recipient);
    return { ...f, ...(name ? { recipientName: name } : {}), receipt };
  });
  const all = new Map([...stored, ...receiptEntries]);
  const { checkpoint, entries } = await prove(
    ctx,
    [...used].sort((a, b) => a - b),
    all,
  );
  const origin = await logOrigin(ctx.pool, ctx.config.baseUrl);
  return {
    blinds,
    report: {
      format: DISCLOSURE_FORMAT,
      origin,
      generatedAt: new Date().toISOString(),
      period: { start: q.start.toISOString(), end: q.end.toISOString() },
      blinds: blinds.map((b) => ({ blind: b.blind, key: b.key })),
      disclosures: lines,
      entries,
      checkpoint,
      keys: await auditKeys(ctx, origin),
    },
  };
}

/** Inclusion proofs of the entries in the latest signed checkpoint (one is signed now if it does not cover them). */
async function prove(ctx: Ctx, indexes: number[], stored: Map<number, Stored>) {
  let cp = await latestCheckpoint(ctx.pool);
  const last = indexes.at(-1) ?? -1;
  if (!cp || cp.treeSize <= last) cp = await issueCheckpoint(ctx);
  if (!cp || cp.treeSize <= last)
    throw new GatewayError('UNAVAILABLE', 'no checkpoint covers the entries yet; retry shortly', { retryAfter: 5 });
  const tree = new TreeReader(ctx.pool, cp.treeSize);
  const entries: ProvenEntry[] = [];
  for (const index of indexes) {
    const text = stored.get(index)?.text;
    if (text === undefined) continue;
    entries.push({ index, entry: text, proof: (await tree.inclusionProof(index)).map(toBase64) });
  }
  return { checkpoint: toEvidenceCheckpoint(cp, false), entries };
}

/** The accounting as a person asks for it: the report, and the audit entry of the asking. */
export async function accountOfDisclosures(
  ctx: Ctx,
  q: DisclosureQuery,
  requester: Requester,
  via: string,
): Promise<DisclosureReport> {
  const { report, blinds } = await disclosureReport(ctx, q);
  await auditPatientQuery(ctx, requester, blinds, {
    via,
    from: report.period.start,
    to: report.period.end,
    disclosures: report.disclosures.length,
  });
  return report;
}
