import { createHash } from 'node:crypto';
import type { Queryable } from '../db/pool.ts';
import { canonicalJsonAround } from './canonical.ts';
import type { AuditEventType, AuditOutcome } from './events.ts';

export type { AuditOutcome } from './events.ts';

/**
 * One audit entry, AuditEvent-shaped. Identifiers and digests only: never PHI,
 * never a bundle, never a token.
 */
export interface AuditInput {
  /** Dotted event type, one of the catalogue in ./events.ts (docs/AUDIT.md lists them). */
  type: AuditEventType;
  outcome: AuditOutcome;
  /**
   * Who: the event's counterpart. An EHR `client` or an `admin` API client
   * (systems), a `partner` organisation, this `gateway` itself, a `user` (a
   * person: a named account of the browser pages, or `cli:` and the
   * operating-system user running the CLI), an `endpoint` the gateway calls
   * that is no partner (the local EHR), or an `anonymous` peer. `network`:
   * its address as seen (IP), or the URL the gateway called.
   */
  agent?: {
    type: 'client' | 'partner' | 'gateway' | 'admin' | 'user' | 'endpoint' | 'anonymous';
    id: string;
    network?: string;
  };
  /** What: exchanges, deliveries, keys... by id, with digests where content is involved. */
  entity?: Array<{ type: string; id: string; digest?: string }>;
  /** Small non-PHI facts: HTTP status, attempt number, error code, reason text without content. */
  detail?: Record<string, string | number | boolean | null>;
  /** Why the records were disclosed: HL7 PurposeOfUse codes (v3-ActReason, e.g. TREAT) the submission stated. */
  purposeOfUse?: string[];
  /** Whose records: blinded patient identifiers (keyed HMAC under an HSM key, never reversible), with the key's id. */
  patients?: Array<{ blind: string; key: string }>;
}

export function leafHash(entry: string): Buffer {
  return createHash('sha256')
    .update(Buffer.from([0]))
    .update(entry, 'utf8')
    .digest();
}

/**
 * Append entries to the tamper-evident log. Call it on the transaction that
 * makes the change being recorded, so the record and the change commit (or
 * roll back) together. One statement: the audit_head row lock hands out the
 * indexes (gapless, in commit order) and the database numbers and hashes
 * the entries (auditAppendSql), the same way the intake batch does inside
 * its own statement.
 */
export async function appendAudit(db: Queryable, events: AuditInput[], now = new Date()): Promise<number[]> {
  if (events.length === 0) return [];
  const cols = auditColumns(events, now);
  const { rows } = await db.query<{ idx: string }>({
    // Named, so each connection plans it once (the same text every time).
    name: 'audit-append',
    text: `WITH entries AS (
       SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[], $5::text[], $6::text[]) WITH ORDINALITY AS u(b, a, bb, ab, t, o, ord)
     ), patients AS (
       SELECT * FROM unnest($8::bigint[], $9::bytea[]) AS p(ord, blind)
     ), ${auditAppendSql('entries', '$7::timestamptz', 'patients')}
     SELECT idx FROM logged ORDER BY idx`,
    values: [
      cols.before,
      cols.after,
      cols.beforeBytes,
      cols.afterBytes,
      cols.types,
      cols.outcomes,
      now,
      cols.patientOrds,
      cols.patientBlinds,
    ],
  });
  return rows.map((r) => Number(r.idx));
}

/**
 * Audit entries as columns for auditAppendSql: each entry split around its
 * index, as text for the entry column and as UTF-8 bytes for the leaf hash
 * (so the hash never depends on the database's encoding). The stored entry
 * is canonicalJson({ ...event, index, recorded }); the audit verifier
 * recomputes every leaf hash from it.
 */
export interface AuditColumns {
  before: string[];
  after: string[];
  beforeBytes: Buffer[];
  afterBytes: Buffer[];
  types: string[];
  outcomes: string[];
  /** The patient index rows (audit_patients): the entry's position in `events` (from 1, as WITH ORDINALITY counts) and its blind. */
  patientOrds: number[];
  patientBlinds: Buffer[];
}

export function auditColumns(events: AuditInput[], now: Date): AuditColumns {
  const cols: AuditColumns = {
    before: [],
    after: [],
    beforeBytes: [],
    afterBytes: [],
    types: [],
    outcomes: [],
    patientOrds: [],
    patientBlinds: [],
  };
  const recorded = now.toISOString();
  for (const [i, e] of events.entries()) {
    for (const p of e.patients ?? []) {
      cols.patientOrds.push(i + 1);
      cols.patientBlinds.push(Buffer.from(p.blind, 'base64url'));
    }
    const [before, after] = canonicalJsonAround({ ...e, recorded }, 'index');
    cols.before.push(before);
    cols.after.push(after);
    cols.beforeBytes.push(Buffer.from(before, 'utf8'));
    cols.afterBytes.push(Buffer.from(after, 'utf8'));
    cols.types.push(e.type);
    cols.outcomes.push(e.outcome);
  }
  return cols;
}

/**
 * The CTEs `head`, `numbered`, `logged` and `indexed` that append the rows
 * of the CTE named `entries` (columns b, a, bb, ab, t, o from AuditColumns,
 * and ord for the order): head takes the audit_head row lock until the
 * statement's transaction commits and reserves the indexes; numbered gives
 * each entry its index; logged inserts the entries with their index filled
 * in and leaf hash SHA-256(0x00 || entry), as leafHash() computes it, and
 * returns idx; indexed writes the patient index rows of the relation
 * `patients` (ord, blind: an entry's ord and one of its blinds) in the same
 * statement, so an entry and its index rows commit together.
 */
export function auditAppendSql(entries: string, recordedParam: string, patients: string): string {
  return `head AS (
       UPDATE audit_head SET size = size + (SELECT count(*) FROM ${entries}) RETURNING size - (SELECT count(*) FROM ${entries}) AS first
     ), numbered AS (
       SELECT r.*, head.first + row_number() OVER (ORDER BY r.ord) - 1 AS idx FROM head, ${entries} r
     ), logged AS (
       INSERT INTO audit_log (idx, recorded_at, type, outcome, entry, leaf_hash)
       SELECT n.idx, ${recordedParam}, n.t, n.o, n.b || n.idx::text || n.a,
              sha256('\\x00'::bytea || n.bb || convert_to(n.idx::text, 'UTF8') || n.ab)
         FROM numbered n
       RETURNING idx
     ), indexed AS (
       INSERT INTO audit_patients (blind, recorded_at, idx, type)
       SELECT p.blind, ${recordedParam}, n.idx, n.t FROM numbered n JOIN ${patients} p ON p.ord = n.ord
     )`;
}
