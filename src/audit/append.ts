import { createHash } from 'node:crypto';
import type pg from 'pg';
import { canonicalJson, canonicalJsonAround } from './canonical.ts';

/** FHIR AuditEvent.outcome: 0 success, 4 minor, 8 serious, 12 major failure. */
export type AuditOutcome = 'success' | 'minor-failure' | 'serious-failure' | 'major-failure';

/**
 * One audit entry, AuditEvent-shaped. Identifiers and digests only: never PHI,
 * never a bundle, never a token.
 */
export interface AuditInput {
  /** Dotted event type, e.g. intake.accepted, delivery.attempt, inbox.refused, auth.failure, key.generated */
  type: string;
  outcome: AuditOutcome;
  /** Who: the authenticated client, partner organisation, gateway itself or an admin. */
  agent?: { type: 'client' | 'partner' | 'gateway' | 'admin' | 'anonymous'; id: string; network?: string };
  /** What: exchanges, deliveries, keys... by id, with digests where content is involved. */
  entity?: Array<{ type: string; id: string; digest?: string }>;
  /** Small non-PHI facts: HTTP status, attempt number, error code, reason text without content. */
  detail?: Record<string, string | number | boolean | null>;
}

export type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

export function leafHash(entry: string): Buffer {
  return createHash('sha256').update(Buffer.from([0])).update(entry, 'utf8').digest();
}

/**
 * Append entries to the tamper-evident log. Call it on the transaction that
 * makes the change being recorded, so the record and the change commit (or
 * roll back) together. The row lock on audit_head keeps indexes gapless and
 * in commit order.
 */
export async function appendAudit(db: Queryable, events: AuditInput[], now = new Date()): Promise<number[]> {
  if (events.length === 0) return [];
  const { rows } = await db.query<{ first: string }>('UPDATE audit_head SET size = size + $1 RETURNING size - $1 AS first', [events.length]);
  const first = Number(rows[0]!.first);
  const idx: number[] = [];
  const types: string[] = [];
  const outcomes: string[] = [];
  const entries: string[] = [];
  const hashes: Buffer[] = [];
  events.forEach((e, i) => {
    const entry = canonicalJson({ ...e, index: first + i, recorded: now.toISOString() });
    idx.push(first + i);
    types.push(e.type);
    outcomes.push(e.outcome);
    entries.push(entry);
    hashes.push(leafHash(entry));
  });
  await db.query(
    `INSERT INTO audit_log (idx, recorded_at, type, outcome, entry, leaf_hash)
     SELECT i, $2, t, o, e, h FROM unnest($1::bigint[], $3::text[], $4::text[], $5::text[], $6::bytea[]) AS u(i, t, o, e, h)`,
    [idx, now, types, outcomes, entries, hashes],
  );
  return idx;
}

/**
 * Audit entries as columns for a statement that numbers them itself (see
 * AUDIT_ROWS_SQL): each entry split around its index, as text for the entry
 * column and as UTF-8 bytes for the leaf hash (so the hash never depends on
 * the database's encoding). The result is byte for byte what appendAudit
 * writes; the audit verifier recomputes every leaf hash from the entry.
 */
export interface AuditColumns {
  before: string[];
  after: string[];
  beforeBytes: Buffer[];
  afterBytes: Buffer[];
  types: string[];
  outcomes: string[];
}

export function auditColumns(events: AuditInput[], now: Date): AuditColumns {
  const cols: AuditColumns = { before: [], after: [], beforeBytes: [], afterBytes: [], types: [], outcomes: [] };
  const recorded = now.toISOString();
  for (const e of events) {
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
 * SQL that appends prepared entries inside a larger statement. `first` is a
 * CTE with one column `first` (the index of the first entry, from the
 * audit_head UPDATE); `rows` a CTE with the AuditColumns as b, a, bb, ab, t,
 * o and a column ord giving the order. Same leaf hash as leafHash().
 */
export function auditRowsSql(first: string, rows: string, recordedParam: string): string {
  const idx = `(${first}.first + row_number() OVER (ORDER BY r.ord) - 1)`;
  return `INSERT INTO audit_log (idx, recorded_at, type, outcome, entry, leaf_hash)
    SELECT ${idx}, ${recordedParam}, r.t, r.o, r.b || ${idx}::text || r.a,
           sha256('\\x00'::bytea || r.bb || convert_to(${idx}::text, 'UTF8') || r.ab)
      FROM ${first}, ${rows} r`;
}
