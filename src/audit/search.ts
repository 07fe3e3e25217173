import { GatewayError } from '../errors.ts';
import type { Queryable } from '../db/pool.ts';
import { DCM, eventTypesFor, OUTCOME_CODE, type LogEntry } from './fhir.ts';
import { required } from '../required.ts';
import { parseFhirDate, type DatePrecision, type FhirDate } from '../fhir/dates.ts';
import type { HandlingPreference } from '../fhir/rest/prefer.ts';
import { parseIdentifierToken, splitTokens, type PatientIdentifier } from '../fhir/patient-identifiers.ts';

/** Parsed AuditEvent search parameters (GET /fhir/AuditEvent and POST /fhir/AuditEvent/_search). */
export interface AuditQuery {
  /** The filter: what `total` counts. */
  where: string[];
  params: unknown[];
  count: number;
  offset: number;
  /** `date` (oldest first) or `-date` (newest first, the default): the log's append order. */
  order: 'asc' | 'desc';
  /** Keyset paging: only entries after this leaf index in `order` (the next link's `_cursor`). */
  cursor: number | undefined;
  /** The parameters as applied, in order: what the self link shows (unknown ones ignored under handling=lenient). */
  applied: Array<[string, string]>;
  /** patient.identifier: each parameter's alternatives (AND of ORs), to be blinded before the search. */
  patients: PatientIdentifier[][];
}

/** The blinds an entry may carry for any of these identifiers (every blinding key): supplied by the caller, which holds the HSM. */
export type PatientBlinder = (ids: PatientIdentifier[]) => Promise<Buffer[]>;

export const PATIENT_IDENTIFIER = 'patient.identifier';

/** The filters, each declared in the CapabilityStatement from this one list. */
export const AUDIT_SEARCH_PARAMS = [
  {
    name: 'date',
    type: 'date',
    documentation: 'recorded; prefixes ge, le, gt, lt, eq; a year, month or day covers its span',
  },
  {
    name: 'type',
    type: 'token',
    documentation: 'event type (system|code or code: DICOM 110106, audit-event-type rest…), or a gateway event type',
  },
  {
    name: 'subtype',
    type: 'token',
    documentation:
      'a subtype (system|code or code: restful-interaction read, ISO 21089 disclose…), or a gateway event type',
  },
  {
    name: 'outcome',
    type: 'token',
    documentation: '0, 4, 8, 12 or success, minor-failure, serious-failure, major-failure',
  },
  { name: 'entity', type: 'token', documentation: 'an entity identifier: id, or type|id (e.g. exchange|ex-1)' },
  { name: 'agent', type: 'token', documentation: 'an agent identifier value (client, partner or user id)' },
  {
    name: 'patient.identifier',
    type: 'token',
    documentation:
      'system|value of a patient identifier (|value for one without a system): blinded on the server under every blinding key and matched against the blinded patients of each entry; the identifier is neither stored nor logged, and the search itself is audited (disclosures.queried)',
  },
] as const;

/** The largest page; a larger _count is clamped to it (FHIR: a server may return fewer than asked). */
export const MAX_COUNT = 1000;
const DEFAULT_COUNT = 50;
const RESULT_PARAMS = ['_count', '_sort', '_cursor', '_offset', '_format'];
const KNOWN = new Set<string>([...AUDIT_SEARCH_PARAMS.map((p) => p.name), ...RESULT_PARAMS]);
const SORTS = { date: 'asc', '-date': 'desc' } as const;
const PREFIX = { ge: '>=', le: '<=', gt: '>', lt: '<', eq: '=' } as const;
const NAMES: Record<string, string> = Object.fromEntries(
  Object.entries(OUTCOME_CODE).map(([name, code]) => [code, name]),
);

const bad = (message: string, param: string) => new GatewayError('INVALID_VALUE', message, { expression: [param] });
const list = (v: unknown): string[] => (v === undefined ? [] : Array.isArray(v) ? v.map(String) : [String(v)]);

function intParam(raw: string | undefined, param: string, min: number, max: number, fallback: number): number {
  if (raw === undefined) return fallback;
  if (!/^\d{1,15}$/.test(raw) || Number(raw) < min || Number(raw) > max)
    throw bad(`${param} must be a whole number from ${min} to ${max}`, param);
  return Number(raw);
}

const SPAN: Record<Exclude<DatePrecision, 'time'>, string> = { year: '1 year', month: '1 month', day: '1 day' };

/** A time compares as an instant; a year, month or day as the span it covers (eq = within it; le, gt: its end). */
function dateCondition(op: (typeof PREFIX)[keyof typeof PREFIX], date: FhirDate, p: (v: unknown) => string): string {
  if (date.precision === 'time') return `recorded_at ${op} ${p(date.text)}::timestamptz`;
  const start = `${p(date.firstDay)}::date`;
  const span = SPAN[date.precision];
  // Only a condition that uses the end binds its span: an unused parameter has no type PostgreSQL can infer.
  const end = () => `(${start} + ${p(span)}::interval)`;
  if (op === '=') return `recorded_at >= ${start} AND recorded_at < ${end()}`;
  if (op === '<=') return `recorded_at < ${end()}`;
  if (op === '>') return `recorded_at >= ${end()}`;
  return `recorded_at ${op} ${start}`;
}

/**
 * FHIR search semantics: repeated parameters AND together, commas OR within
 * one. An unknown parameter is a 400 under `handling=strict` (the default)
 * and ignored under `handling=lenient`; a bad value is a 400 either way.
 */
export function parseAuditQuery(query: Record<string, unknown>, handling: HandlingPreference = 'strict'): AuditQuery {
  const applied: Array<[string, string]> = [];
  for (const k of Object.keys(query)) {
    if (KNOWN.has(k)) for (const v of list(query[k])) applied.push([k, v]);
    else if (handling === 'strict')
      throw bad(`unsupported search parameter ${k}; supported: ${[...KNOWN].join(', ')}`, k);
  }
  const where: string[] = [];
  const params: unknown[] = [];
  const p = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  for (const d of list(query.date)) {
    const prefix = /^(ge|le|gt|lt|eq)?/.exec(d)?.[1];
    const date = parseFhirDate(d.slice(prefix?.length ?? 0));
    if (!date)
      throw bad(
        `date must be [ge|le|gt|lt|eq] and a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD) or a dateTime with zone that exists, not ${JSON.stringify(d.slice(0, 40))}`,
        'date',
      );
    where.push(dateCondition(PREFIX[(prefix ?? 'eq') as keyof typeof PREFIX], date, p));
  }
  // type and subtype: the gateway event types whose AuditEvents carry the code (src/audit/fhir.ts), commas OR.
  for (const element of ['type', 'subtype'] as const)
    for (const t of list(query[element])) {
      const types = t.split(',').flatMap((tok) => {
        const [system, code] = tok.includes('|') ? (tok.split('|', 2) as [string, string]) : [undefined, tok];
        if (!code) throw bad(`${element} needs a code`, element);
        const types = eventTypesFor(element, system || undefined, code);
        // A DICOM code names a closed list: one no event of this gateway carries is a mistake, not an empty answer.
        if (!types.length && (system === DCM || (!system && /^\d{6}$/.test(code))))
          throw bad(`no event of this gateway has the DICOM ${element} ${code}`, element);
        return types;
      });
      where.push(`type = ANY(${p([...new Set(types)])})`);
    }
  for (const o of list(query.outcome)) {
    const names = o.split(',').map((x) => {
      const name = NAMES[x] ?? (Object.hasOwn(OUTCOME_CODE, x) ? x : undefined);
      if (!name)
        throw bad(
          'outcome must be 0, 4, 8 or 12 (or success, minor-failure, serious-failure, major-failure)',
          'outcome',
        );
      return name;
    });
    where.push(`outcome = ANY(${p(names)})`);
  }
  for (const e of list(query.entity)) {
    const ors = e.split(',').map((tok) => {
      const [type, id] = tok.includes('|') ? (tok.split('|', 2) as [string, string]) : [undefined, tok];
      const match = type ? { type: type.replace(/^urn:fhir-gateway:entity:/, ''), id } : { id };
      return `(entry::jsonb -> 'entity') @> ${p(JSON.stringify([match]))}::jsonb`;
    });
    where.push(`(${ors.join(' OR ')})`);
  }
  for (const a of list(query.agent))
    where.push(`(entry::jsonb -> 'agent' ->> 'id') = ANY(${p(a.split(',').map((x) => x.split('|').pop()))})`);
  const patients = list(query[PATIENT_IDENTIFIER]).map((v) =>
    splitTokens(v).map((tok) => {
      const id = parseIdentifierToken(tok);
      if (id === 'no-system-separator')
        throw bad(
          'patient.identifier takes system|value (or |value for an identifier without a system): a blinded identifier matches one system only',
          PATIENT_IDENTIFIER,
        );
      if (id === 'empty-value') throw bad('patient.identifier needs a value after the |', PATIENT_IDENTIFIER);
      return id;
    }),
  );
  const askedCount = intParam(list(query._count)[0], '_count', 1, Number.MAX_SAFE_INTEGER, DEFAULT_COUNT);
  const count = Math.min(askedCount, MAX_COUNT);
  if (count !== askedCount) for (const a of applied) if (a[0] === '_count') a[1] = String(count);
  const offset = intParam(list(query._offset)[0], '_offset', 0, 100_000_000, 0);
  const cursorText = list(query._cursor)[0];
  const cursor = cursorText === undefined ? undefined : intParam(cursorText, '_cursor', 0, Number.MAX_SAFE_INTEGER, 0);
  const sort = list(query._sort)[0] ?? '-date';
  if (!Object.hasOwn(SORTS, sort)) throw bad('_sort must be date or -date', '_sort');
  return { where, params, count, offset, order: SORTS[sort as keyof typeof SORTS], cursor, applied, patients };
}

/**
 * One page in the query's order, after its cursor: a keyset over the leaf
 * index, so entries appended between two pages neither repeat nor push
 * anything out. `more` says whether a next page exists; `total` counts the
 * whole filter.
 */
export async function searchAudit(
  db: Queryable,
  q: AuditQuery,
  blinder?: PatientBlinder,
): Promise<{ entries: LogEntry[]; total: number; more: boolean }> {
  const where = [...q.where];
  const params = [...q.params];
  for (const alternatives of q.patients) {
    if (!blinder) throw new Error('a patient.identifier search needs the blinder');
    params.push(await blinder(alternatives));
    // The patient index (audit_patients, by blind and time) narrows the log to this patient's entries.
    where.push(`idx IN (SELECT idx FROM audit_patients WHERE blind = ANY($${params.length}::bytea[]))`);
  }
  const filterParams = [...params];
  const filter = where.length ? `WHERE ${where.join(' AND ')}` : '';
  const page = [...where];
  if (q.cursor !== undefined) {
    params.push(q.cursor);
    page.push(`idx ${q.order === 'desc' ? '<' : '>'} $${params.length}`);
  }
  const pageWhere = page.length ? `WHERE ${page.join(' AND ')}` : '';
  const { rows } = await db.query<{ entry: string }>(
    `SELECT entry FROM audit_log ${pageWhere} ORDER BY idx ${q.order === 'desc' ? 'DESC' : 'ASC'} LIMIT ${q.count + 1} OFFSET ${q.offset}`,
    params,
  );
  const { rows: total } = await db.query<{ n: string }>(`SELECT count(*) AS n FROM audit_log ${filter}`, filterParams);
  return {
    entries: rows.slice(0, q.count).map((r) => JSON.parse(r.entry) as LogEntry),
    total: Number(required(total[0], 'count(*) returns one row').n),
    more: rows.length > q.count,
  };
}
