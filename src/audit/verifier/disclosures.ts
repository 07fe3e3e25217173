/**
 * The accounting of disclosures as a self-verifying document, and its
 * offline check. The gateway builds each line from audit entries with
 * disclosureFacts() below; the verifier rebuilds it from the same entries,
 * proven in a signed checkpoint, and compares. Pure (no I/O, no node:
 * imports): `gateway audit verify` and the audit page both run this file.
 *
 * A report names no patient: only the blinds of the identifier asked about
 * (one per blinding key) and the entries that carry one of them.
 */
import { makeHasher, verifyInclusion } from './merkle.ts';
import { fromBase64, utf8, type Checkpoint } from './note.ts';
import {
  verifyCheckpointChain,
  verifyEvidencePack,
  type EvidenceCheckpoint,
  type EvidenceKey,
  type EvidencePack,
  type ProblemKind,
  type VerifyDeps,
} from './verify.ts';

export const DISCLOSURE_FORMAT = 'fhir-gateway-disclosure-report/v1';

/** The entry types the accounting reads: the disclosure, its submission, and the recipient's receipt. */
export const DISCLOSURE_ENTRY = 'exchange.sealed';
export const INTAKE_ENTRY = 'intake.accepted';
export const RECEIPT_ENTRY = 'delivery.receipt';

/** The members of a stored audit entry the accounting reads. */
export interface EntryView {
  index: number;
  type: string;
  recorded: string;
  entity?: Array<{ type: string; id: string }>;
  detail?: Record<string, unknown>;
  purposeOfUse?: string[];
  patients?: Array<{ blind: string; key: string }>;
}

export type ReceiptStatus = 'received' | 'pending' | 'failed';

export interface DisclosureLine {
  /** When the records were sealed to the recipient: the exchange.sealed entry's time (UTC). */
  recorded: string;
  /** The recipient organisation as the entry names it (its partner id). */
  recipient: string;
  /** Its name in the directory when the report was made (not part of the signed entry). */
  recipientName?: string;
  /** HL7 PurposeOfUse codes the submission stated; empty when it stated none. */
  purposeOfUse: string[];
  exchange: string;
  delivery: string;
  /** Leaf index of the exchange.sealed entry: the disclosure itself. */
  entry: number;
  /** Leaf index of the intake.accepted entry of the same exchange, when the report carries it. */
  intakeEntry?: number;
  /**
   * received with `entry`: proven by the delivery.receipt entry. Otherwise the
   * delivery's state in the gateway's records when the report was made.
   */
  receipt: { status: ReceiptStatus; id?: string; at?: string; entry?: number };
}

/** An audit entry exactly as stored, with its inclusion proof in the report's checkpoint. */
export interface ProvenEntry {
  index: number;
  entry: string;
  proof: string[];
}

export interface DisclosureReport {
  format: typeof DISCLOSURE_FORMAT;
  origin: string;
  generatedAt: string;
  /** [start, end): instants, UTC. */
  period: { start: string; end: string };
  /** The identifier asked about, blinded under each blinding key still held. */
  blinds: Array<{ blind: string; key: string }>;
  disclosures: DisclosureLine[];
  entries: ProvenEntry[];
  /** The signed tree head every proof is against. */
  checkpoint: EvidenceCheckpoint;
  keys: EvidenceKey[];
}

export function readEntry(text: string): EntryView | undefined {
  try {
    const v = JSON.parse(text) as Partial<EntryView>;
    if (!v || typeof v !== 'object' || !Number.isSafeInteger(v.index)) return undefined;
    if (typeof v.type !== 'string' || typeof v.recorded !== 'string') return undefined;
    return v as EntryView;
  } catch {
    return undefined;
  }
}

const entityId = (e: EntryView, types: readonly string[]) => e.entity?.find((x) => types.includes(x.type))?.id;
export const namesPatient = (e: EntryView, blinds: ReadonlySet<string>) =>
  (e.patients ?? []).some((p) => blinds.has(p.blind));
const inPeriod = (recorded: string, period: DisclosureReport['period']) =>
  recorded >= period.start && recorded < period.end;

export type DisclosureFacts = Omit<DisclosureLine, 'recipientName' | 'receipt'>;

/**
 * One disclosure as its entries state it: the sealed entry names the
 * delivery, exchange and recipient; the purpose is the one the sealed entry
 * states, else the one its submission (intake.accepted) stated. Undefined
 * when the entry is not a disclosure.
 */
export function disclosureFacts(sealed: EntryView, intake: EntryView | undefined): DisclosureFacts | undefined {
  const delivery = entityId(sealed, ['delivery']);
  const exchange = entityId(sealed, ['exchange', 'imaging-exchange']);
  const recipient = sealed.detail?.partner;
  if (sealed.type !== DISCLOSURE_ENTRY || !delivery || !exchange || typeof recipient !== 'string') return undefined;
  const matching = intake && intake.type === INTAKE_ENTRY && entityId(intake, ['exchange']) === exchange;
  const purpose = sealed.purposeOfUse ?? (matching ? intake.purposeOfUse : undefined) ?? [];
  return {
    recorded: sealed.recorded,
    recipient,
    purposeOfUse: [...purpose],
    exchange,
    delivery,
    entry: sealed.index,
    ...(matching ? { intakeEntry: intake.index } : {}),
  };
}

/** The receipt a delivery.receipt entry records for `delivery`, or undefined if it records none for it. */
export function receiptFacts(receipt: EntryView, delivery: string): { id: string; at: string } | undefined {
  const id = entityId(receipt, ['receipt']);
  if (receipt.type !== RECEIPT_ENTRY || entityId(receipt, ['delivery']) !== delivery || !id) return undefined;
  return { id, at: receipt.recorded };
}

export type DisclosureProblemKind = ProblemKind | 'mismatch' | 'incomplete';

export interface DisclosureProblem {
  kind: DisclosureProblemKind;
  message: string;
  /** The leaf index at fault, when one is. */
  index?: number;
}

export interface DisclosureVerification {
  ok: boolean;
  problem?: DisclosureProblem;
  disclosures: number;
  entriesVerified: number;
  /** Lines that say received without a receipt entry to prove it (receipts recorded before the gateway kept one). */
  unprovenReceipts: number;
  /** Given the whole trail up to the report's checkpoint: no disclosure in it is missing from the report. */
  complete?: boolean;
  anchor?: { size: number; issuedAt: string };
  keyIds: string[];
}

class Fail extends Error {
  readonly problem: DisclosureProblem;
  constructor(problem: DisclosureProblem) {
    super(problem.message);
    this.problem = problem;
  }
}
function fail(p: DisclosureProblem): never {
  throw new Fail(p);
}

function checkShape(r: unknown): asserts r is DisclosureReport {
  const v = r as Partial<DisclosureReport>;
  const bad = (m: string): never => fail({ kind: 'malformed', message: m });
  if (!v || typeof v !== 'object') bad('the report is not a JSON object');
  if (v.format !== DISCLOSURE_FORMAT) bad(`unknown report format ${String(v.format)}`);
  if (typeof v.origin !== 'string') bad('origin missing');
  if (!v.period || typeof v.period.start !== 'string' || typeof v.period.end !== 'string') bad('period missing');
  if (!Array.isArray(v.blinds) || !v.blinds.every((b) => typeof b?.blind === 'string'))
    bad('blinds must be a list of blinded identifiers');
  if (!Array.isArray(v.disclosures) || !Array.isArray(v.entries) || !Array.isArray(v.keys))
    bad('disclosures, entries and keys must be arrays');
  if (!v.checkpoint || typeof v.checkpoint.note !== 'string') bad('checkpoint missing');
}

/** A line states exactly the facts of its entries (member order aside). */
const states = (line: DisclosureLine, facts: DisclosureFacts) =>
  line.recorded === facts.recorded &&
  line.recipient === facts.recipient &&
  line.exchange === facts.exchange &&
  line.delivery === facts.delivery &&
  line.entry === facts.entry &&
  line.intakeEntry === facts.intakeEntry &&
  Array.isArray(line.purposeOfUse) &&
  line.purposeOfUse.length === facts.purposeOfUse.length &&
  line.purposeOfUse.every((c, i) => c === facts.purposeOfUse[i]);

/** Every entry proven in the anchor; returns them by leaf index. */
function provenEntries(r: DisclosureReport, anchor: Checkpoint, deps: VerifyDeps): Map<number, EntryView> {
  const hasher = makeHasher(deps.sha256);
  const out = new Map<number, EntryView>();
  for (const p of r.entries) {
    const index = p?.index;
    if (!Number.isSafeInteger(index) || typeof p.entry !== 'string' || !Array.isArray(p.proof))
      fail({ kind: 'malformed', message: 'an entry of the report is not {index, entry, proof}' });
    const view = readEntry(p.entry);
    if (!view || view.index !== index)
      fail({ kind: 'changed', index, message: `entry ${index} does not carry its own index` });
    try {
      const proof = p.proof.map((h) => fromBase64(String(h)));
      verifyInclusion(hasher, index, anchor.size, hasher.leaf(utf8(p.entry)), proof, anchor.rootHash);
    } catch {
      fail({
        kind: 'changed',
        index,
        message: `entry ${index} was changed: it (or its inclusion proof) does not match the leaf the signed tree holds`,
      });
    }
    out.set(index, view);
  }
  return out;
}

function checkLines(r: DisclosureReport, entries: Map<number, EntryView>): number {
  const blinds = new Set(r.blinds.map((b) => b.blind));
  const listed = new Set<number>();
  let unproven = 0;
  for (const line of r.disclosures) {
    const at = line?.entry;
    const mismatch: (m: string) => never = (m) =>
      fail({ kind: 'mismatch', index: at, message: `disclosure ${at}: ${m}` });
    const sealed = entries.get(at);
    if (!sealed) mismatch('its entry is not in the report');
    if (listed.has(at)) mismatch('listed twice');
    listed.add(at);
    if (!namesPatient(sealed, blinds)) mismatch('the entry does not name the patient asked about');
    if (!inPeriod(sealed.recorded, r.period)) mismatch('the entry is outside the period');
    const intake = line.intakeEntry === undefined ? undefined : entries.get(line.intakeEntry);
    if (line.intakeEntry !== undefined && (!intake || !namesPatient(intake, blinds)))
      mismatch('its submission entry is missing or names another patient');
    const facts = disclosureFacts(sealed, intake);
    if (!facts) mismatch('the entry is not a disclosure');
    if (!states(line, facts)) mismatch('the line says something its entries do not');
    const { receipt } = line;
    if (receipt?.status === 'received' && receipt.entry !== undefined) {
      const entry = entries.get(receipt.entry);
      const proven = entry ? receiptFacts(entry, facts.delivery) : undefined;
      if (!proven || proven.id !== receipt.id || proven.at !== receipt.at)
        mismatch('the receipt entry does not record this receipt');
    } else if (receipt?.status === 'received') unproven++;
    else if (receipt?.status !== 'pending' && receipt?.status !== 'failed') mismatch('unknown receipt status');
  }
  // The report cannot leave out a disclosure it carries the proof of.
  for (const e of entries.values())
    if (
      e.type === DISCLOSURE_ENTRY &&
      namesPatient(e, blinds) &&
      inPeriod(e.recorded, r.period) &&
      !listed.has(e.index)
    )
      fail({
        kind: 'incomplete',
        index: e.index,
        message: `entry ${e.index} is a disclosure the report does not list`,
      });
  return unproven;
}

/**
 * Given evidence packs of the whole trail from leaf 0 up to the report's
 * checkpoint (each verified on its own), every disclosure of the patient in
 * the period must be a line of the report.
 */
async function checkComplete(r: DisclosureReport, size: number, trail: unknown[], deps: VerifyDeps): Promise<void> {
  const blinds = new Set(r.blinds.map((b) => b.blind));
  const listed = new Set(r.disclosures.map((d) => d.entry));
  let next = 0;
  for (const pack of trail) {
    const report = await verifyEvidencePack(pack, deps);
    if (!report.ok)
      fail({
        kind: report.problem?.kind ?? 'malformed',
        message: `trail: ${report.problem?.message ?? 'not verified'}`,
      });
    const p = pack as EvidencePack;
    if (p.origin !== r.origin) fail({ kind: 'malformed', message: `trail pack is of log "${p.origin}"` });
    if (p.from > next) fail({ kind: 'incomplete', message: `the trail has a gap before leaf ${p.from}` });
    for (const [i, text] of p.entries.entries()) {
      const e = readEntry(text);
      const index = p.from + i;
      if (index >= size || !e || e.type !== DISCLOSURE_ENTRY) continue;
      if (namesPatient(e, blinds) && inPeriod(e.recorded, r.period) && !listed.has(index))
        fail({ kind: 'incomplete', index, message: `entry ${index} is a disclosure the report does not list` });
    }
    next = Math.max(next, p.to);
  }
  if (next < size) fail({ kind: 'incomplete', message: `the trail ends at leaf ${next}, before ${size}` });
}

export async function verifyDisclosureReport(
  input: unknown,
  deps: VerifyDeps,
  options: { trail?: unknown[] } = {},
): Promise<DisclosureVerification> {
  const out: DisclosureVerification = {
    ok: false,
    disclosures: 0,
    entriesVerified: 0,
    unprovenReceipts: 0,
    keyIds: [],
  };
  try {
    checkShape(input);
    const r = input;
    out.keyIds = (deps.trustedKeys ?? r.keys).map((k) => String(k.kid));
    const chain = await verifyCheckpointChain({ checkpoints: [r.checkpoint], origin: r.origin, keys: r.keys }, deps);
    if ('problem' in chain) fail(chain.problem);
    const anchor = chain.checkpoints[0];
    if (!anchor) fail({ kind: 'malformed', message: 'no checkpoint' });
    out.anchor = { size: anchor.size, issuedAt: r.checkpoint.issuedAt };
    const entries = provenEntries(r, anchor, deps);
    out.entriesVerified = entries.size;
    out.unprovenReceipts = checkLines(r, entries);
    out.disclosures = r.disclosures.length;
    if (options.trail) {
      await checkComplete(r, anchor.size, options.trail, deps);
      out.complete = true;
    }
    out.ok = true;
  } catch (err) {
    if (!(err instanceof Fail)) throw err;
    out.problem = err.problem;
  }
  return out;
}

/** One line for humans. */
export function describeDisclosureVerification(v: DisclosureVerification): string {
  if (v.ok)
    return `OK: ${v.disclosures} disclosure(s), each proven by its entries in the signed tree of size ${v.anchor?.size} (keys ${v.keyIds.join(', ')})${v.unprovenReceipts ? `; ${v.unprovenReceipts} receipt(s) stated without a receipt entry` : ''}${v.complete ? '; the trail up to that size holds no other disclosure of this patient in the period' : ''}`;
  const p = v.problem;
  return `NOT VERIFIED (${p?.kind}) ${p?.index !== undefined ? `at entry ${p.index}` : ''}: ${p?.message}`;
}
