/**
 * The accounting of disclosures over a trail of N audit entries (default 100,000):
 *   lookup      the bare index lookup (audit_patients by blind and period): the raw primitive
 *   report      disclosureReport(): blinding in the HSM under every key, the lookup, the entries,
 *               delivery states, receipt entries and an inclusion proof of every entry used
 *   audited     accountOfDisclosures(): the report and the audit entry of the query
 * The trail: submissions of 2,000 patients (blinded in the HSM, five identifiers each) of five entries
 * each (intake.accepted, exchange.signed, exchange.sealed, delivery.attempt, delivery.receipt), written
 * through appendAudit with their patient index rows; the patient asked about has 10 disclosures, with
 * their delivery rows and receipts. Each case runs warm, median of R runs, after one cold run.
 * Run: npm run bench:disclosures [-- N [R]]   (embedded PostgreSQL + dev SoftHSM token in a temp dir)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApp } from '../plugins/app.ts';
import { appendAudit, type AuditInput } from '../src/audit/append.ts';
import { issueCheckpoint } from '../src/audit/checkpoint.ts';
import { blindPatients, lookupBlinds, type BlindedPatient } from '../src/compliance/blind.ts';
import { accountOfDisclosures, disclosureReport, type DisclosureQuery } from '../src/compliance/disclosures.ts';
import { loadConfig } from '../src/config.ts';
import { inTransaction } from '../src/db/pool.ts';
import { uuidv7 } from '../src/ids.ts';
import type { PatientIdentifier } from '../src/fhir/patient-identifiers.ts';
import { freePort } from '../test/helpers/ports.ts';

const ENTRIES = Number(process.argv[2] ?? 100_000);
const RUNS = Number(process.argv[3] ?? 20);
const PATIENTS = 2_000;
const TARGET_DISCLOSURES = 10;
const PER_SUBMISSION = 5;
const BATCH = 1_000;
delete process.env.SOFTHSM2_CONF;

const dataDir = mkdtempSync(join(tmpdir(), 'gw-bench-disclosures-'));
const config = loadConfig({
  DATA_DIR: dataDir,
  PORT: String(await freePort()),
  EMBEDDED_PG_PORT: String(await freePort()),
  LOG_LEVEL: 'silent',
  HSM_SESSIONS: '2',
});
const app = await buildApp(config, { logger: false });
const ctx = app.ctx;

const identifiers = (p: number): PatientIdentifier[] => [
  {
    system: 'http://hl7.org/fhir/sid/us-ssn',
    value: `999-${String(p % 100).padStart(2, '0')}-${String(p).padStart(4, '0')}`,
  },
  { system: 'http://hospital.example.org/mrn', value: `MRN${p}` },
  { system: 'https://github.com/synthetichealth/synthea', value: `patient-${p}` },
  { system: 'urn:oid:2.16.840.1.113883.4.3.25', value: `S${p}` },
  { system: 'http://standardhealthrecord.org/fhir/StructureDefinition/passportNumber', value: `X${p}X` },
];
const partners = ['urn:org:north', 'urn:org:south', 'urn:org:east', 'urn:org:west'];

function submission(patients: BlindedPatient[], i: number, ids: { exchange: string; delivery: string }): AuditInput[] {
  const partner = partners[i % partners.length]!;
  const entity = [
    { type: 'delivery', id: ids.delivery },
    { type: 'exchange', id: ids.exchange },
  ];
  return [
    {
      type: 'intake.accepted',
      outcome: 'success',
      agent: { type: 'client', id: 'ehr' },
      entity: [{ type: 'exchange', id: ids.exchange, digest: `sha-256=${'A'.repeat(43)}` }],
      detail: { bundleType: 'transaction', entries: 70, recipients: 1, bytes: 250_000 },
      patients,
    },
    { type: 'exchange.signed', outcome: 'success', agent: { type: 'gateway', id: 'gw' }, entity, detail: { partner } },
    {
      type: 'exchange.sealed',
      outcome: 'success',
      agent: { type: 'gateway', id: 'gw' },
      entity,
      detail: { partner, recipientKid: 'kid' },
      patients,
    },
    {
      type: 'delivery.attempt',
      outcome: 'success',
      agent: { type: 'partner', id: partner },
      entity,
      detail: { attempt: 1 },
    },
    {
      type: 'delivery.receipt',
      outcome: 'success',
      agent: { type: 'partner', id: partner },
      entity: [...entity, { type: 'receipt', id: uuidv7() }],
      detail: { status: 'accepted' },
    },
  ];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function time(name: string, fn: () => Promise<unknown>): Promise<number> {
  const cold = performance.now();
  await fn();
  const coldMs = performance.now() - cold;
  const runs: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    await fn();
    runs.push(performance.now() - t);
  }
  const m = median(runs);
  console.log(
    `${name.padEnd(44)} median ${m.toFixed(2).padStart(8)} ms  (cold ${coldMs.toFixed(1)} ms, max ${Math.max(...runs).toFixed(1)} ms, ${RUNS} runs)`,
  );
  return m;
}

try {
  const t0 = performance.now();
  const blinds: BlindedPatient[][] = [];
  for (let p = 0; p < PATIENTS; p++) blinds.push(await blindPatients(ctx, identifiers(p)));
  console.log(`blinded ${PATIENTS * 5} identifiers in the HSM in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const target = 0;
  const submissions = Math.floor(ENTRIES / PER_SUBMISSION);
  const every = Math.floor(submissions / TARGET_DISCLOSURES);
  const targetDeliveries: Array<{ exchange: string; delivery: string; partner: string }> = [];
  const t1 = performance.now();
  for (let s = 0; s < submissions; s += BATCH / PER_SUBMISSION) {
    const events: AuditInput[] = [];
    for (let i = s; i < Math.min(submissions, s + BATCH / PER_SUBMISSION); i++) {
      const mine = i % every === 0 && targetDeliveries.length < TARGET_DISCLOSURES;
      const ids = { exchange: uuidv7(), delivery: uuidv7() };
      if (mine) targetDeliveries.push({ ...ids, partner: partners[i % partners.length]! });
      events.push(...submission(blinds[mine ? target : 1 + (i % (PATIENTS - 1))]!, i, ids));
    }
    await inTransaction(ctx.pool, (c) => appendAudit(c, events));
  }
  // The target's deliveries, delivered, each pointing at its receipt entry.
  for (const d of targetDeliveries) {
    await ctx.pool.query(
      `INSERT INTO exchanges (id, client_id, bundle_type, content_digest, content_length) VALUES ($1, 'ehr', 'transaction', 'x', 1)`,
      [d.exchange],
    );
    await ctx.pool.query(
      `INSERT INTO deliveries (id, exchange_id, partner_id, recipient_kid, envelope_digest, state, receipt_jti, delivered_at, receipt_audit_idx)
       SELECT $1, $2, $3, 'kid', 'x', 'delivered', (entry::jsonb -> 'entity' -> 2 ->> 'id'), now(), idx
         FROM audit_log WHERE type = 'delivery.receipt' AND entry LIKE $4`,
      [d.delivery, d.exchange, d.partner, `%${d.delivery}%`],
    );
  }
  await issueCheckpoint(ctx);
  const size = Number((await ctx.pool.query('SELECT size FROM audit_head')).rows[0].size);
  const indexRows = Number((await ctx.pool.query('SELECT count(*) AS n FROM audit_patients')).rows[0].n);
  console.log(
    `trail: ${size} entries, ${indexRows} patient index rows, written in ${((performance.now() - t1) / 1000).toFixed(1)} s`,
  );
  await ctx.pool.query('VACUUM ANALYZE audit_log, audit_patients');

  const query: DisclosureQuery = {
    identifier: identifiers(target)[0]!,
    start: new Date(Date.now() - 86_400_000),
    end: new Date(Date.now() + 86_400_000),
  };
  const asked = (await lookupBlinds(ctx, [query.identifier])).map((b) => Buffer.from(b.blind, 'base64url'));
  const lookup = await time('bare index lookup (audit_patients)', () =>
    ctx.pool.query(
      `SELECT DISTINCT idx FROM audit_patients
        WHERE blind = ANY($1::bytea[]) AND recorded_at >= $2 AND recorded_at < $3 AND type = ANY($4::text[])`,
      [asked, query.start, query.end, ['exchange.sealed', 'intake.accepted']],
    ),
  );
  let lines = 0;
  const report = await time('disclosureReport (blind, look up, prove)', async () => {
    lines = (await disclosureReport(ctx, query)).report.disclosures.length;
  });
  const audited = await time('accountOfDisclosures (report + its audit)', () =>
    accountOfDisclosures(ctx, query, { type: 'admin', id: 'bench' }, 'bench'),
  );
  if (lines !== TARGET_DISCLOSURES) throw new Error(`the report lists ${lines} disclosures, not ${TARGET_DISCLOSURES}`);
  console.log(
    `${lines} disclosures found among ${size} entries; report / bare lookup = ${(report / lookup).toFixed(1)}, audited / bare lookup = ${(audited / lookup).toFixed(1)}; target < 1000 ms: ${audited < 1000 ? 'met' : 'NOT met'}`,
  );
} finally {
  await app.close();
  rmSync(dataDir, { recursive: true, force: true });
}
