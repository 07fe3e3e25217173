import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { startTwoGateways, type Peer, type TwoGateways } from '../helpers/two-gateways.ts';
import { waitFor } from '../helpers/outbound.ts';
import { testClient } from '../helpers/auth.ts';
import { SCOPE_AUDIT_READ } from '../../src/auth/scopes.ts';
import { patientIdentifiers } from '../../src/fhir/patient-identifiers.ts';

/**
 * No plaintext PHI at rest (issues 4 and 5): after A sends several Synthea
 * bundles to B and B's EHR pulls them, no PHI marker taken from the bundles
 * themselves (names, birth dates, addresses, SSN/MRN/licence/passport
 * numbers, phone numbers, patient ids) appears in any text, json or bytea
 * column of any table in either database, in any graphile-worker job payload
 * (captured as written, so completed jobs count too), in any file under
 * DATA_DIR, or in any log line either gateway wrote at level trace.
 * A positive control proves each scanner finds a planted marker.
 */
const SYNTHEA = join(import.meta.dirname, '../fixtures/synthea');
const FILES = [
  'Clemente_Kreiger_1484a42d-0eaf-4654-9cbf-6b050a5cd73b.json',
  'Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json',
  'Ned_Hintz_e4b9259d-0f54-48d1-a35d-b526729a4dfe.json',
  'Liz_Conn_27c911c6-f045-4ffa-af5d-6eba57ac94b2.json',
];
// Below this length a marker could turn up by chance inside base64url ciphertext, so
// cells that are nothing but base64url/compact JOSE are searched for the longer ones only.
const MIN_IN_CIPHERTEXT = 8;

interface Patient {
  id?: string;
  name?: Array<{ family?: string; given?: string[] }>;
  birthDate?: string;
  address?: Array<{ line?: string[]; city?: string; postalCode?: string }>;
  identifier?: Array<{ system?: string; value?: string }>;
  telecom?: Array<{ value?: string }>;
}

/** PHI markers taken from every Patient resource of a bundle. */
function phiMarkers(bundleText: string): string[] {
  const bundle = JSON.parse(bundleText) as { entry?: Array<{ resource?: { resourceType?: string } & Patient }> };
  const out = new Set<string>();
  for (const e of bundle.entry ?? []) {
    const p = e.resource;
    if (p?.resourceType !== 'Patient') continue;
    for (const n of p.name ?? []) {
      if (n.family) out.add(n.family);
      for (const g of n.given ?? []) {
        out.add(g);
        if (n.family) out.add(`${g} ${n.family}`);
      }
    }
    if (p.birthDate) out.add(p.birthDate);
    for (const a of p.address ?? []) {
      for (const l of a.line ?? []) out.add(l);
      if (a.city) out.add(a.city);
      if (a.postalCode) out.add(a.postalCode);
    }
    for (const i of p.identifier ?? [])
      if (i.value) {
        out.add(i.value);
        // As a compliance officer types it for the accounting of disclosures.
        if (i.system) out.add(`${i.system}|${i.value}`);
      }
    for (const t of p.telecom ?? []) if (t.value) out.add(t.value);
    if (p.id) out.add(p.id);
  }
  return [...out].filter((m) => m.length >= 3);
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

interface Finding {
  where: string;
  marker: string;
}

/**
 * Markers as whole tokens, so base64 coordinates rarely match by chance: a long marker must not sit
 * inside a longer alphanumeric run, and a short one not inside a base64url run (`-` and `_` included),
 * since cells such as key records hold base64url strings beside plain JSON.
 */
function scanner(markers: string[]) {
  const patterns = markers.map((m) => {
    const word = m.length >= MIN_IN_CIPHERTEXT ? 'A-Za-z0-9' : 'A-Za-z0-9_\\-';
    return { m, re: new RegExp(`(?<![${word}])${escape(m)}(?![${word}])`) };
  });
  const long = patterns.filter((p) => p.m.length >= MIN_IN_CIPHERTEXT);
  const decode = (part: string) => {
    try {
      return Buffer.from(part, 'base64url').toString('utf8');
    } catch {
      return '';
    }
  };
  const scan = (where: string, text: string, out: Finding[]): void => {
    if (!text) return;
    const jose = /^[A-Za-z0-9_\-.=\s]+$/.test(text);
    for (const p of jose ? long : patterns) if (p.re.test(text)) out.push({ where, marker: p.m });
    // A compact JWS is only signed, not sealed: its header and payload are readable by anyone.
    const parts = text.trim().split('.');
    if (jose && parts.length === 3) {
      scan(`${where} (JWS header)`, decode(parts[0]!), out);
      scan(`${where} (JWS payload)`, decode(parts[1]!), out);
    }
    if (jose && parts.length === 5) scan(`${where} (JWE header)`, decode(parts[0]!), out);
  };
  return scan;
}

/** Every text-like, json and bytea column of every table outside the system schemas, cell by cell. */
async function scanDatabase(
  p: Peer,
  scan: ReturnType<typeof scanner>,
): Promise<{ findings: Finding[]; cells: number; tables: Set<string> }> {
  const pool = p.gw.app.ctx.pool;
  const { rows: cols } = await pool.query<{ schema: string; table: string; column: string; type: string }>(
    `SELECT c.table_schema AS schema, c.table_name AS table, c.column_name AS column, c.data_type AS type
       FROM information_schema.columns c JOIN information_schema.tables t USING (table_schema, table_name)
      WHERE t.table_type = 'BASE TABLE' AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
        AND (c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'bytea', 'ARRAY', 'USER-DEFINED', 'xml'))`,
  );
  const findings: Finding[] = [];
  const tables = new Set<string>();
  let cells = 0;
  for (const c of cols) {
    const ident = `"${c.schema}"."${c.table}"`;
    const col = `"${c.column}"`;
    tables.add(`${c.schema}.${c.table}`);
    // bytea as text with only non-printable bytes escaped: ASCII markers stay readable.
    const expr = c.type === 'bytea' ? `encode(${col}, 'escape')` : `${col}::text`;
    const { rows } = await pool.query<{ v: string | null }>(
      `SELECT ${expr} AS v FROM ${ident} WHERE ${col} IS NOT NULL`,
    );
    for (const r of rows) {
      cells++;
      scan(`${c.schema}.${c.table}.${c.column}`, r.v ?? '', findings);
    }
  }
  return { findings, cells, tables };
}

function scanFiles(dir: string, scan: ReturnType<typeof scanner>, findings: Finding[]): number {
  let n = 0;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = statSync(path);
    if (st.isDirectory()) n += scanFiles(path, scan, findings);
    else if (st.isFile()) {
      n++;
      scan(path, readFileSync(path).toString('latin1'), findings);
    }
  }
  return n;
}

/** Keep every job payload graphile-worker ever writes (jobs are deleted when done). */
async function captureJobs(p: Peer): Promise<void> {
  await p.gw.app.ctx.pool.query(`
    CREATE TABLE zz_phi_job_capture (task_id int, key text, payload json, last_error text, seen_at timestamptz DEFAULT now());
    CREATE FUNCTION zz_phi_capture() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO zz_phi_job_capture (task_id, key, payload, last_error) VALUES (NEW.task_id, NEW.key, NEW.payload, NEW.last_error); RETURN NEW; END $$;
    CREATE TRIGGER zz_phi_capture AFTER INSERT OR UPDATE ON graphile_worker._private_jobs FOR EACH ROW EXECUTE FUNCTION zz_phi_capture();
  `);
}

/** The gateway's own logger (its serializers and redactions, at LOG_LEVEL=trace), written to memory. */
function memoryLog() {
  const lines: string[] = [];
  return { lines, options: { logger: undefined, logStream: { write: (s: string) => void lines.push(s) } } };
}

/** A log line as a person reads it: URLs percent-decoded, so an identifier in a query string shows as typed. */
function decoded(line: string): string {
  try {
    return decodeURIComponent(line);
  } catch {
    return line.replace(/%7C/gi, '|').replace(/%3A/gi, ':').replace(/%2F/gi, '/');
  }
}

describe('no plaintext PHI at rest: rows, job payloads, files and logs of both gateways', () => {
  let t: TwoGateways;
  // B's local EHR for push hand-over (LOCAL_FHIR_BASE_URL): down once (503), then it stores what it gets.
  let ehr: Server;
  const ehrReceived: string[] = [];
  let ehrCalls = 0;
  const logA = memoryLog();
  const logB = memoryLog();
  const sent = FILES.map((f) => readFileSync(join(SYNTHEA, f), 'utf8'));
  const markers = [...new Set(sent.flatMap(phiMarkers))];
  const scan = scanner(markers);

  beforeAll(async () => {
    ehr = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        if (ehrCalls++ === 0) {
          // An EHR that echoes the record in its error: the gateway must not keep that text anywhere.
          res.writeHead(503, { 'content-type': 'application/fhir+json' }).end(
            JSON.stringify({
              resourceType: 'OperationOutcome',
              issue: [{ severity: 'error', code: 'transient', diagnostics: body.slice(0, 5000) }],
            }),
          );
          return;
        }
        ehrReceived.push(body);
        res
          .writeHead(201, { 'content-type': 'application/fhir+json' })
          .end('{"resourceType":"Bundle","type":"transaction-response"}');
      });
    });
    await new Promise<void>((resolve) => ehr.listen(0, '127.0.0.1', resolve));
    const ehrUrl = `http://127.0.0.1:${(ehr.address() as AddressInfo).port}/fhir`;
    t = await startTwoGateways(
      { LOG_LEVEL: 'trace', LOCAL_FHIR_BASE_URL: ehrUrl },
      { a: logA.options as never, b: logB.options as never },
    );
    await captureJobs(t.a);
    await captureJobs(t.b);
  }, 60_000);
  afterAll(async () => {
    await t?.close();
    ehr?.closeAllConnections();
    await new Promise((resolve) => ehr?.close(resolve));
  });

  it('markers come from the fixtures: names, birth dates, addresses, SSN, MRN, phone', () => {
    expect(markers.length).toBeGreaterThanOrEqual(FILES.length * 10);
    for (const text of sent) {
      const m = phiMarkers(text);
      expect(
        m.some((x) => /^\d{4}-\d{2}-\d{2}$/.test(x)),
        'birth date',
      ).toBe(true);
      expect(
        m.some((x) => /^999-\d{2}-\d{4}$/.test(x)),
        'SSN',
      ).toBe(true);
      expect(
        m.some((x) => /^555-\d{3}-\d{4}$/.test(x)),
        'phone',
      ).toBe(true);
      expect(m.filter((x) => x.length >= MIN_IN_CIPHERTEXT).length).toBeGreaterThanOrEqual(6);
    }
  });

  it('sends, delivers and hands over the bundles, then finds no marker anywhere', { timeout: 90_000 }, async () => {
    const { a, b } = t;
    const aAuth = await a.ehr.bearer();
    const toB = encodeURIComponent(b.gw.config.org);
    const ids: string[] = [];
    for (const [i, text] of sent.entries()) {
      const res = await request(a.gw.app.server)
        .post(`/exchanges?recipient=${toB}`)
        .set('authorization', aAuth)
        .set('idempotency-key', `phi-${i}-${randomUUID()}`)
        .type('application/fhir+json')
        .send(text);
      expect(res.status, JSON.stringify(res.body).slice(0, 300)).toBe(202);
      ids.push((res.headers['content-location'] as string).split('/').pop()!);
    }
    // Refused submissions built from the same PHI: their error messages and audit entries must not echo it.
    const refused = [
      { type: 'application/fhir+json', body: sent[0]!.slice(0, sent[0]!.indexOf('"birthDate"') + 40) }, // truncated mid-Patient
      {
        type: 'application/fhir+json',
        body: sent[1]!.replace('"resourceType": "Patient"', '"resourceType": "Patient", "__proto__": {}'),
      },
      { type: 'application/json', body: sent[2]! },
      { type: 'application/fhir+json', body: sent[3]!.replace('"birthDate"', '"birthDate" "') },
    ];
    for (const r of refused) {
      const res = await request(a.gw.app.server)
        .post(`/exchanges?recipient=${toB}`)
        .set('authorization', aAuth)
        .set('content-type', r.type)
        .send(r.body);
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      const echoed: Finding[] = [];
      scan('response', JSON.stringify(res.body), echoed);
      expect(echoed, 'a refusal echoes PHI back').toEqual([]);
    }
    // A sender-side PHI refusal with an unknown recipient too.
    await request(a.gw.app.server)
      .post('/exchanges?recipient=urn%3Atest%3Anobody')
      .set('authorization', aAuth)
      .type('application/fhir+json')
      .send(sent[0]!)
      .expect(422);

    for (const id of ids) {
      await waitFor(
        `exchange ${id} delivered`,
        async () => {
          const res = await request(a.gw.app.server).get(`/exchanges/${id}`).set('authorization', aAuth);
          return res.body.recipients?.every((r: { state: string }) => r.state === 'delivered') ? true : undefined;
        },
        45_000,
        100,
      );
    }
    const bAuth = await b.ehr.bearer();
    const list = await request(b.gw.app.server)
      .get('/inbox/messages?_count=1000')
      .set('authorization', bAuth)
      .expect(200);
    expect(list.body.messages).toHaveLength(sent.length);
    const pulled: string[] = [];
    for (const m of list.body.messages as Array<{ id: string }>) {
      const res = await request(b.gw.app.server)
        .get(`/inbox/messages/${m.id}`)
        .set('authorization', bAuth)
        .buffer(true)
        .parse((r, cb) => {
          let data = '';
          r.setEncoding('utf8');
          r.on('data', (c: string) => (data += c));
          r.on('end', () => cb(null, data));
        })
        .expect(200);
      pulled.push(res.body as string);
      await request(b.gw.app.server).post(`/inbox/messages/${m.id}/$ack`).set('authorization', bAuth).expect(200);
    }
    // The bundles did travel in full (so their markers were there to leak).
    expect(pulled.sort()).toEqual([...sent].sort());
    // B also pushed each bundle to its local EHR, through a retried job (the first push met a 503).
    await waitFor(
      'every bundle forwarded',
      async () => (ehrReceived.length === sent.length ? true : undefined),
      30_000,
      100,
    );
    expect([...ehrReceived].sort()).toEqual([...sent].sort());
    expect(ehrCalls).toBe(sent.length + 1);
    // The accounting of disclosures and the AuditEvent search by identifier, on both gateways: the
    // identifiers travel in a body and in a URL, and every query is audited, yet none may be kept.
    const identifiers = sent.flatMap((text) => patientIdentifiers(JSON.parse(text)));
    expect(identifiers.length).toBeGreaterThanOrEqual(sent.length * 4);
    for (const p of [a, b]) {
      const auditor = await (await testClient(p.gw, { scopes: [SCOPE_AUDIT_READ] })).bearer();
      for (const id of identifiers) {
        const report = await request(p.gw.app.server)
          .post('/audit/disclosures')
          .set('authorization', auditor)
          .send({ system: id.system, value: id.value })
          .expect(200);
        expect(report.body.disclosures).toHaveLength(p === a ? 1 : 0);
        const search = await request(p.gw.app.server)
          .get('/fhir/AuditEvent')
          .query({ 'patient.identifier': `${id.system}|${id.value}` })
          .set('authorization', auditor)
          .expect(200);
        // A: intake.accepted and exchange.sealed; B: inbox.accepted; and each gateway's audited queries.
        expect(search.body.total).toBeGreaterThanOrEqual(p === a ? 3 : 2);
      }
    }

    // Let every job finish, so their final writes are captured too.
    for (const p of [a, b]) {
      await waitFor(
        'job queue empty',
        async () => {
          const { rows } = await p.gw.app.ctx.pool.query(
            "SELECT count(*)::int AS n FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks k ON k.id = j.task_id WHERE k.identifier NOT LIKE 'zz%' AND j.locked_at IS NOT NULL",
          );
          return rows[0].n === 0 ? true : undefined;
        },
        10_000,
        100,
      );
    }

    for (const [name, p, log] of [
      ['A', a, logA],
      ['B', b, logB],
    ] as const) {
      // (a) every row of every table
      const db = await scanDatabase(p, scan);
      expect(db.tables.has('public.deliveries') || db.tables.has('public.inbox_messages')).toBe(true);
      expect(db.tables.has('graphile_worker._private_jobs')).toBe(true);
      expect(db.cells).toBeGreaterThan(50);
      expect(db.findings, `${name}: PHI in the database: ${JSON.stringify(db.findings)}`).toEqual([]);
      // (b) every job payload ever written
      const jobs = (
        await p.gw.app.ctx.pool.query<{ payload: unknown; key: string | null; last_error: string | null }>(
          'SELECT payload, key, last_error FROM zz_phi_job_capture',
        )
      ).rows;
      expect(jobs.length, `${name}: delivery / forward jobs were captured`).toBeGreaterThanOrEqual(sent.length);
      if (p === b)
        expect(
          jobs.some((j) => j.last_error),
          'the failed forward attempt was captured',
        ).toBe(true);
      const jobFindings: Finding[] = [];
      for (const j of jobs) scan(`${name} job`, JSON.stringify(j), jobFindings);
      expect(jobFindings, `${name}: PHI in job payloads: ${JSON.stringify(jobFindings)}`).toEqual([]);
      // (c) every log line, at level trace
      expect(log.lines.length, `${name} wrote logs`).toBeGreaterThan(20);
      const logFindings: Finding[] = [];
      log.lines.forEach((l, i) => {
        scan(`${name} log line ${i}`, l, logFindings);
        scan(`${name} log line ${i} (decoded)`, decoded(l), logFindings);
      });
      expect(logFindings, `${name}: PHI in logs: ${JSON.stringify(logFindings)}`).toEqual([]);
      // The searches above were logged, with the identifier cut from their URL.
      expect(log.lines.some((l) => l.includes('patient.identifier=[REDACTED]'))).toBe(true);
      // DATA_DIR files
      const fileFindings: Finding[] = [];
      scanFiles(p.gw.config.dataDir, scan, fileFindings);
      expect(fileFindings, `${name}: PHI in DATA_DIR: ${JSON.stringify(fileFindings)}`).toEqual([]);
    }
  });

  it('positive control: each scanner finds a planted marker', { timeout: 30_000 }, async () => {
    const { a } = t;
    const pool = a.gw.app.ctx.pool;
    const ssn = markers.find((m) => /^999-\d{2}-\d{4}$/.test(m))!;
    const family = JSON.parse(sent[2]!).entry.find(
      (e: { resource: { resourceType: string } }) => e.resource.resourceType === 'Patient',
    ).resource.name[0].family as string;
    const birth = markers.find((m) => /^\d{4}-\d{2}-\d{2}$/.test(m))!;
    const jwsPayload = Buffer.from(JSON.stringify({ patient: family })).toString('base64url');
    await pool.query('CREATE TABLE zz_phi_control (note text, blob bytea, doc jsonb, token text)');
    try {
      await pool.query("INSERT INTO zz_phi_control VALUES ($1, convert_to($2, 'UTF8'), $3, $4)", [
        `seen ${ssn} here`,
        `xx ${birth}\u0001`,
        JSON.stringify({ name: family }),
        `eyJhbGciOiJub25lIn0.${jwsPayload}.c2ln`,
      ]);
      const db = await scanDatabase(a, scan);
      const where = (w: string) => db.findings.filter((f) => f.where.startsWith(w)).map((f) => f.marker);
      expect(where('public.zz_phi_control.note')).toContain(ssn);
      expect(where('public.zz_phi_control.blob')).toContain(birth);
      expect(where('public.zz_phi_control.doc')).toContain(family);
      expect(where('public.zz_phi_control.token (JWS payload)')).toContain(family);
      expect(db.findings.every((f) => f.where.startsWith('public.zz_phi_control.'))).toBe(true);
    } finally {
      await pool.query('DROP TABLE zz_phi_control');
    }
    // A job payload, captured even after the job is gone.
    await a.gw.app.ctx.queue.addJob('zz_phi_control_task', { leaked: ssn }, { maxAttempts: 1 });
    await pool.query(
      "DELETE FROM graphile_worker._private_jobs WHERE task_id IN (SELECT id FROM graphile_worker._private_tasks WHERE identifier = 'zz_phi_control_task')",
    );
    const captured = (await pool.query('SELECT payload FROM zz_phi_job_capture')).rows;
    const jobFindings: Finding[] = [];
    for (const j of captured) scan('job', JSON.stringify(j), jobFindings);
    expect(jobFindings.map((f) => f.marker)).toEqual([ssn]);
    // A log line.
    const before = logA.lines.length;
    a.gw.app.log.debug({ note: `patient ${family}` }, 'control line');
    const logFindings: Finding[] = [];
    logA.lines.slice(before).forEach((l) => scan('log', l, logFindings));
    expect(logFindings.map((f) => f.marker)).toEqual([family]);
    // And a marker inside ciphertext-like text is not a false positive, while a long one still is.
    const noise: Finding[] = [];
    scan('cipher', `abc${family}def.${ssn.replace(/-/g, '')}`, noise);
    expect(noise).toEqual([]);
    scan('cipher', `ab_${ssn}_cd`, noise);
    expect(noise.map((f) => f.marker)).toEqual([ssn]);
    // A short marker inside a base64url string of a JSON cell is noise; as a JSON value it is found.
    const short = markers.find((m) => m.length < MIN_IN_CIPHERTEXT && /^[A-Za-z]+$/.test(m))!;
    const keyRecord: Finding[] = [];
    scan('key record', JSON.stringify({ x: `Qz-${short}_k9`, y: `9f_${short}` }), keyRecord);
    expect(keyRecord).toEqual([]);
    scan('key record', JSON.stringify({ name: short }), keyRecord);
    expect(keyRecord.map((f) => f.marker)).toEqual([short]);
  });
});
