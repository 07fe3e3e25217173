import { sign } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTwoGateways, type TwoGateways } from '../helpers/two-gateways.ts';
import { messageBundle, waitFor } from '../helpers/outbound.ts';
import { cleanEnv, runCli } from '../helpers/cli.ts';
import { softPartner, type SoftPartner } from '../helpers/envelopes.ts';
import { issueCheckpoint, latestCheckpoint } from '../../src/audit/checkpoint.ts';
import { checkPartnerLog } from '../../src/evidence/partner-check.ts';
import { PARTNER_EVIDENCE_SWEEP_TASK } from '../../src/worker/tasks/partner-evidence.ts';
import { unpackCompactJwe } from '../../src/jose/packed-jwe.ts';
import { EVIDENCE, EVIDENCE_PATH, receiptDigest, signEvidenceRequest } from '../../src/protocol/evidence.ts';
import type { Signer } from '../../src/jose/signer.ts';
import type { ExchangeEvidence } from '../../src/audit/verifier/exchange.ts';
import { fromBase64, toBase64 } from '../../src/audit/verifier/note.ts';

/** A software signer for a test partner's key: the request is signed as a real third gateway would. */
const softSigner = (p: SoftPartner): Signer => ({
  alg: 'ES256',
  kid: p.sigKid,
  sign: async (data) => sign('sha256', data, { key: p.sigPrivate, dsaEncoding: 'ieee-p1363' }),
  signDigest: async () => {
    throw new Error('not used');
  },
});

/**
 * Cross-organisation delivery evidence between two real gateways on
 * loopback: B's receipt is bound into B's own audit log; A's evidence job
 * proves it in B's signed checkpoint and follows B's log for consistency;
 * `gateway audit export --exchange` writes the proof bundle and
 * `gateway audit verify` checks it with B stopped, naming each tampering.
 */
// Protocol v2 (the default, on both): the receipt is dual-signed and the same evidence holds (PROTOCOL.md §14.4).
describe.each([
  ['v1', { PROTOCOL_V2: 'off' }],
  ['v2', { PROTOCOL_V2: 'on' }],
])('delivery evidence between two gateways, protocol %s', (version, env: Record<string, string>) => {
  let t: TwoGateways;
  let exchangeId: string;
  let deliveryId: string;
  let bundleFile: string;
  const dir = mkdtempSync(join(tmpdir(), 'gw-evidence-'));

  const aCtx = () => t.a.gw.app.ctx;
  const bCtx = () => t.b.gw.app.ctx;
  const bOrg = () => t.b.gw.config.org;
  const aliveB = () => (t.b.worker !== undefined ? t.b : undefined);

  beforeAll(async () => {
    t = await startTwoGateways(env);
    const res = await request(t.a.gw.app.server)
      .post(`/exchanges?recipient=${encodeURIComponent(bOrg())}`)
      .set('authorization', await t.a.ehr.bearer())
      .type('application/fhir+json')
      .send(messageBundle([bOrg()]));
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    exchangeId = (res.headers['content-location'] as string).split('/').pop()!;
    const row = await waitFor(
      'the delivery to B',
      async () =>
        (
          await aCtx().pool.query<{ id: string; receipt: string }>(
            `SELECT id, receipt FROM deliveries WHERE exchange_id = $1 AND state = 'delivered'`,
            [exchangeId],
          )
        ).rows[0],
      60_000,
      200,
    );
    deliveryId = row.id;
  }, 120_000);
  afterAll(async () => {
    if (aliveB()) await t.close();
    else {
      await t.a.worker?.stop();
      await t.a.gw.close();
    }
  });

  it("binds B's receipt into B's audit log, and B's answer names the entry's index", async () => {
    const { rows } = await aCtx().pool.query<{ receipt: string; receipt_jti: string; envelope: Buffer }>(
      `SELECT receipt, receipt_jti, (SELECT e.envelope FROM delivery_envelopes e WHERE e.delivery_id = d.id) AS envelope FROM deliveries d WHERE id = $1`,
      [deliveryId],
    );
    const sent = rows[0]!;
    // A v2 receipt is dual-signed, in the JSON serialization.
    expect(sent.receipt.startsWith('{')).toBe(version === 'v2');
    const { rows: inbox } = await bCtx().pool.query<{ audit_idx: string; entry: string }>(
      `SELECT m.audit_idx, l.entry FROM inbox_messages m JOIN audit_log l ON l.idx = m.audit_idx WHERE m.receipt_id = $1`,
      [sent.receipt_jti],
    );
    const entry = JSON.parse(inbox[0]!.entry) as { type: string; index: number; entity: object[] };
    expect(entry.type).toBe('inbox.accepted');
    expect(entry.index).toBe(Number(inbox[0]!.audit_idx));
    expect(entry.entity).toContainEqual({ type: 'receipt', id: sent.receipt_jti, digest: receiptDigest(sent.receipt) });
    expect(entry.entity).toContainEqual({ type: 'delivery', id: deliveryId });
    // The same envelope again: the first receipt, byte for byte, and the index of the entry that recorded it.
    const again = await fetch(`${t.b.gw.url}/inbox`, {
      method: 'POST',
      headers: { 'content-type': 'application/jose' },
      body: unpackCompactJwe(sent.envelope),
    });
    expect(again.status).toBe(200);
    expect(await again.text()).toBe(sent.receipt);
    expect(again.headers.get(EVIDENCE.auditIndexHeader)).toBe(inbox[0]!.audit_idx);
  });

  it("A's durable evidence job proves the receipt in B's next signed checkpoint", async () => {
    // Before B signs a checkpoint covering the entry, the receipt is pending and nothing is kept.
    const before = await checkPartnerLog(aCtx(), bOrg(), { force: true });
    expect(before.outcome).toBe('checked');
    await issueCheckpoint(bCtx());
    await aCtx().queue.addJob(PARTNER_EVIDENCE_SWEEP_TASK, {});
    const kept = await waitFor(
      'the evidence of the receipt',
      async () =>
        (
          await aCtx().pool.query<{ state: string; audit_index: string; tree_size: string }>(
            `SELECT e.state, e.audit_index, c.tree_size FROM delivery_evidence e JOIN partner_checkpoints c ON c.id = e.checkpoint_id
              WHERE e.delivery_id = $1`,
            [deliveryId],
          )
        ).rows[0],
      30_000,
      200,
    );
    expect(kept.state).toBe('proven');
    const bLatest = (await latestCheckpoint(bCtx().pool))!;
    expect(Number(kept.tree_size)).toBeLessThanOrEqual(bLatest.treeSize);
    expect(Number(kept.audit_index)).toBeLessThan(Number(kept.tree_size));
    // A's own log records B's checkpoint (A witnesses B's log) and the proven receipt.
    const { rows } = await aCtx().pool.query<{ type: string; entry: string }>(
      `SELECT type, entry FROM audit_log WHERE type IN ('partner-log.checkpoint', 'delivery.evidence') ORDER BY idx`,
    );
    expect(rows.map((r) => r.type)).toContain('partner-log.checkpoint');
    const evidence = rows.find((r) => r.type === 'delivery.evidence')!;
    expect(JSON.parse(evidence.entry).entity).toContainEqual({ type: 'delivery', id: deliveryId });
    // B audited what it served, to whom.
    const { rows: served } = await bCtx().pool.query<{ entry: string }>(
      `SELECT entry FROM audit_log WHERE type = 'evidence.served' ORDER BY idx DESC LIMIT 1`,
    );
    expect(JSON.parse(served[0]!.entry).agent.id).toBe(t.a.gw.config.org);
  });

  it('gives a partner only its own receipts, and refuses (audited) an unsigned or misdirected request', async () => {
    const url = `${t.b.gw.url}${EVIDENCE_PATH}`;
    const post = (body: string) =>
      fetch(url, { method: 'POST', headers: { 'content-type': 'application/jose' }, body });
    const refused = await post('not a jws');
    expect(refused.status).toBe(400);
    expect(
      ((await refused.json()) as { issue: { details: { coding: { code: string }[] } }[] }).issue[0]!.details.coding[0]!
        .code,
    ).toBe('JWS_MALFORMED');
    const c = await softPartner('https://gw-c.test');
    await bCtx().directory.add({ id: c.id, endpoint: `${c.id}/inbox`, jwks: c.jwks });
    const { rows } = await aCtx().pool.query<{ receipt_jti: string }>(
      'SELECT receipt_jti FROM deliveries WHERE id = $1',
      [deliveryId],
    );
    const claims = {
      iss: c.id,
      aud: bOrg(),
      iat: Math.floor(Date.now() / 1000),
      jti: crypto.randomUUID(),
      size: 0,
      receipts: [rows[0]!.receipt_jti],
    };
    const foreign = await post(await signEvidenceRequest(softSigner(c), claims));
    expect(foreign.status).toBe(200);
    const answer = (await foreign.json()) as { receipts: unknown[]; unknown: string[]; checkpoint: string };
    expect(answer.receipts).toEqual([]);
    expect(answer.unknown).toEqual([rows[0]!.receipt_jti]);
    const misdirected = await post(
      await signEvidenceRequest(softSigner(c), { ...claims, aud: 'https://elsewhere.test' }),
    );
    expect(misdirected.status).toBe(400);
    const { rows: audited } = await bCtx().pool.query<{ reason: string }>(
      `SELECT entry::jsonb -> 'detail' ->> 'reason' AS reason FROM audit_log WHERE type = 'evidence.refused' ORDER BY idx`,
    );
    expect(audited.map((r) => r.reason)).toEqual(['JWS_MALFORMED', 'WRONG_AUDIENCE']);
  });

  it('gateway audit export --exchange writes one proof bundle of the exchange', { timeout: 60_000 }, async () => {
    bundleFile = join(dir, 'bundle.json');
    const token = t.a.gw.token;
    const out = await runCli(
      ['audit', 'export', '--exchange', exchangeId, '--out', bundleFile],
      cleanEnv({
        DATABASE_URL: t.a.gw.databaseUrl,
        PUBLIC_URL: t.a.gw.url,
        DATA_DIR: mkdtempSync(join(tmpdir(), 'gw-evidence-cli-')),
        SOFTHSM2_CONF: join(token.tokenDir, 'softhsm2.conf'),
        HSM_MODULE: token.library,
        HSM_TOKEN_LABEL: token.label,
        HSM_PIN: token.pin,
      }),
    );
    expect(out.code, out.stderr).toBe(0);
    const bundle = JSON.parse(readFileSync(bundleFile, 'utf8')) as ExchangeEvidence;
    expect(bundle.exchange).toBe(exchangeId);
    expect(bundle.sender.entries.map((e) => JSON.parse(e.entry).type)).toEqual(
      expect.arrayContaining(['intake.accepted', 'delivery.receipt', 'delivery.evidence']),
    );
    expect(bundle.deliveries).toHaveLength(1);
    expect(bundle.deliveries[0]!.recipientLog!.entries).toHaveLength(1);
    // Identifiers and digests only: nothing of the bundle's content travels in the evidence.
    // As JSON values: the bundle's base64url signatures and keys may hold any short run of letters.
    expect(readFileSync(bundleFile, 'utf8')).not.toMatch(/"(Doe|Jane)"|"resourceType":\s*"Patient"/);
  });

  it("detects a receiver that rewrites an old audit entry: A's consistency check alarms (audit, metric, console)", async () => {
    const admin = new pg.Client({ connectionString: t.b.gw.databaseUrl });
    await admin.connect();
    try {
      // B rewrites its first entry, recomputes the leaf hash and re-signs a fresh history over it.
      for (const table of ['audit_log', 'audit_checkpoints', 'audit_tiles'])
        await admin.query(`ALTER TABLE ${table} DISABLE TRIGGER USER`);
      await admin.query(`UPDATE audit_log SET entry = replace(entry, '"success"', '"minor-failure"') WHERE idx = 0`);
      await admin.query(
        `UPDATE audit_log SET leaf_hash = sha256('\\x00'::bytea || convert_to(entry, 'UTF8')) WHERE idx = 0`,
      );
      await admin.query('DELETE FROM audit_checkpoints');
      await admin.query('DELETE FROM audit_tiles');
      for (const table of ['audit_log', 'audit_checkpoints', 'audit_tiles'])
        await admin.query(`ALTER TABLE ${table} ENABLE TRIGGER USER`);
    } finally {
      await admin.end();
    }
    await issueCheckpoint(bCtx(), { force: true });
    const r = await checkPartnerLog(aCtx(), bOrg(), { force: true });
    expect(r.outcome).toBe('inconsistent');
    expect(r.reason).toMatch(/not consistent|forked|rewritten/);
    const { rows } = await aCtx().pool.query<{ entry: string }>(
      `SELECT entry FROM audit_log WHERE type = 'partner-log.inconsistent'`,
    );
    expect(rows).toHaveLength(1);
    expect(JSON.parse(rows[0]!.entry)).toMatchObject({ outcome: 'major-failure', agent: { id: bOrg() } });
    // Raised once: the next check says so again without a second entry.
    expect((await checkPartnerLog(aCtx(), bOrg(), { force: true })).outcome).toBe('inconsistent');
    expect((await aCtx().pool.query(`SELECT 1 FROM audit_log WHERE type = 'partner-log.inconsistent'`)).rowCount).toBe(
      1,
    );
    const metrics = await request(t.a.gw.app.server)
      .get('/metrics')
      .set('authorization', await t.a.admin.bearer());
    expect(metrics.text).toContain(`gateway_partner_audit_log_inconsistent{partner="${bOrg()}"} 1`);
    const { partnerHealth } = await import('../../src/console/partner-health.ts');
    const health = (await partnerHealth(aCtx().pool)).find((h) => h.partner.id === bOrg())!;
    expect(health.log?.inconsistency).toMatch(/rewritten/);
  });

  describe('gateway audit verify, offline with B stopped', () => {
    const env = () => cleanEnv({ DATA_DIR: join(dir, 'no-such-data') });
    const variant = (name: string, change: (b: ExchangeEvidence) => void): string => {
      const b = JSON.parse(readFileSync(bundleFile, 'utf8')) as ExchangeEvidence;
      change(b);
      const file = join(dir, `${name}.json`);
      writeFileSync(file, JSON.stringify(b));
      return file;
    };
    const flipHash = (h: string) => {
      const bytes = fromBase64(h);
      bytes[0] = bytes[0]! ^ 1;
      return toBase64(bytes);
    };

    beforeAll(async () => {
      await t.b.worker?.stop();
      await t.b.gw.close();
      t.b.worker = undefined;
      await expect(fetch(`${t.b.gw.url}/health`)).rejects.toThrow();
    });

    it('verifies the untampered bundle with exit 0', { timeout: 30_000 }, async () => {
      const out = await runCli(['audit', 'verify', bundleFile], env());
      expect(out.code, out.stdout + out.stderr).toBe(0);
      expect(out.stdout).toMatch(/^OK: exchange .*1 deliveries/);
    });

    it('names each tampering and exits 1', { timeout: 90_000 }, async () => {
      const cases: Array<[string, (b: ExchangeEvidence) => void, string]> = [
        [
          'receipt-altered',
          (b) => {
            const d = b.deliveries[0]!;
            const later = (p: string) => {
              const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
              claims.iat += 3600;
              return Buffer.from(JSON.stringify(claims)).toString('base64url');
            };
            if (d.receipt.startsWith('{')) {
              const dual = JSON.parse(d.receipt) as { payload: string; signatures: unknown[] };
              d.receipt = JSON.stringify({ ...dual, payload: later(dual.payload) });
            } else {
              const [h, p, s] = d.receipt.split('.');
              d.receipt = [h, later(p!), s].join('.');
            }
          },
          'receipt-altered',
        ],
        [
          'proof-altered',
          (b) => {
            const e = b.deliveries[0]!.recipientLog!.entries[0]!;
            e.proof[0] = flipHash(e.proof[0]!);
          },
          'proof-invalid',
        ],
        [
          'checkpoint-signature',
          (b) => {
            const log = b.deliveries[0]!.recipientLog!;
            const lines = log.checkpoint.split('\n');
            const sigAt = lines.findIndex((l) => l.startsWith('\u2014 '));
            const [dash, name, sig] = lines[sigAt]!.split(' ');
            const bytes = fromBase64(sig!);
            bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 1;
            lines[sigAt] = [dash, name, toBase64(bytes)].join(' ');
            log.checkpoint = lines.join('\n');
          },
          'checkpoint-signature',
        ],
        [
          'entry-missing',
          (b) => {
            b.deliveries[0]!.recipientLog!.entries = [];
          },
          'entry-missing',
        ],
      ];
      const messages = new Set<string>();
      for (const [name, change, kind] of cases) {
        const out = await runCli(['audit', 'verify', variant(name, change)], env());
        expect(out.code, `${name}: ${out.stdout}`).toBe(1);
        expect(out.stdout, name).toContain(`TAMPERED (${kind})`);
        messages.add(out.stdout);
      }
      expect(messages.size).toBe(cases.length);
    });
  });
});
