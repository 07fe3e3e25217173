import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { startTwoGateways, type Peer, type TwoGateways } from '../helpers/two-gateways.ts';
import { messageBundle, waitFor } from '../helpers/outbound.ts';
import { DICOM_DIR } from '../helpers/imaging.ts';
import { diskBytes } from '../helpers/data-dir.ts';
import { cleanEnv, runCli } from '../helpers/cli.ts';
import { purgeExpired } from '../../src/retention/purge.ts';
import { releaseHold } from '../../src/retention/hold.ts';
import { RETENTION_PURGE_TASK } from '../../src/worker/tasks/retention.ts';
import { readState } from '../../src/metrics/state-queries.ts';

/**
 * Retention between two real gateways: A sends bundles and a DICOM study to
 * B, B's EHR takes them; past RETENTION_* the sealed content is purged in
 * small batches while A keeps accepting submissions. The tables and the
 * imaging files shrink, the audit log still verifies, a read of purged
 * content is 410 Gone, and what was not handed over stays.
 */
const SYNTHEA = join(import.meta.dirname, '../fixtures/synthea');
const BUNDLES = [
  'Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json',
  'Clemente_Kreiger_1484a42d-0eaf-4654-9cbf-6b050a5cd73b.json',
  'Liz_Conn_27c911c6-f045-4ffa-af5d-6eba57ac94b2.json',
  'Ned_Hintz_e4b9259d-0f54-48d1-a35d-b526729a4dfe.json',
  'practitionerInformation1559319163815.json',
].map((f) => readFileSync(join(SYNTHEA, f), 'utf8'));
const DICOM = readFileSync(join(DICOM_DIR, 'CT1_UNC.explicit_little_endian.dcm'));

const AGED = `interval '31 days'`;

describe('retention purges handed-over content and frees its space', () => {
  let t: TwoGateways;
  beforeAll(async () => {
    // Protocol v2 (the default): its dual-signed receipts are larger than a row, and kept, but they are
    // written beside the delivery, not among the envelopes.
    t = await startTwoGateways({ RETENTION_BATCH: '2', RETENTION_PAUSE: '20ms' });
  }, 60_000);
  afterAll(async () => t?.close());

  async function submit(p: Peer, to: Peer, body: string | Buffer, imaging = false): Promise<string> {
    const res = await request(p.gw.app.server)
      .post(`/${imaging ? 'imaging' : 'exchanges'}?recipient=${encodeURIComponent(to.gw.config.org)}`)
      .set('authorization', await p.ehr.bearer())
      .type(imaging ? 'application/dicom' : 'application/fhir+json')
      .send(body);
    expect(res.status, JSON.stringify(res.body).slice(0, 300)).toBe(202);
    return res.headers['content-location'] as string;
  }

  async function delivered(p: Peer, location: string): Promise<{ delivery: string; receipt: string }> {
    const view = await waitFor(
      `${location} delivered`,
      async () => {
        const res = await request(p.gw.app.server)
          .get(location)
          .set('authorization', await p.ehr.bearer());
        return res.status === 200 && res.body.recipients[0].state === 'delivered' ? res.body : undefined;
      },
      120_000,
      100,
    );
    return view.recipients[0];
  }

  async function inboxId(p: Peer, delivery: string): Promise<string> {
    const list = await request(p.gw.app.server)
      .get('/inbox/messages?_count=1000')
      .set('authorization', await p.ehr.bearer())
      .expect(200);
    return list.body.messages.find((m: { delivery: string }) => m.delivery === delivery).id;
  }

  const size = async (p: Peer, table: string) =>
    Number(
      (await p.gw.app.ctx.pool.query<{ n: string }>('SELECT pg_total_relation_size($1::regclass) AS n', [table]))
        .rows[0]!.n,
    );
  /**
   * Bytes VACUUM gave back to the file system. It returns a file's empty tail only under the table's
   * exclusive lock, and gives that step up when other sessions want the table (a worker's poll), so it
   * is run again, a few times, until the space is back or plainly is not.
   */
  const freedByVacuum = async (p: Peer, table: string, before: number, enough: number) => {
    let freed = 0;
    for (let i = 0; i < 10 && freed <= enough; i++) {
      if (i) await new Promise((r) => setTimeout(r, 300));
      await p.gw.app.ctx.pool.query(`VACUUM ${table}`);
      freed = before - (await size(p, table));
    }
    return freed;
  };
  const imagingBytes = (p: Peer) => {
    const dir = join(p.gw.config.dataDir, 'imaging', 'inbox');
    return existsSync(dir) ? diskBytes(dir) : 0;
  };

  /** Send each body from A to B, wait for A's verified receipts, and have B's EHR acknowledge each message. */
  async function sendAndTake(bodies: Array<{ body: string | Buffer; imaging?: boolean }>) {
    const { a, b } = t;
    const locations = [];
    for (const x of bodies) locations.push(await submit(a, b, x.body, x.imaging));
    const sent = [];
    for (const l of locations) sent.push({ location: l, ...(await delivered(a, l)) });
    const taken = [];
    for (const s of sent) {
      const id = await inboxId(b, s.delivery);
      await request(b.gw.app.server)
        .post(`/inbox/messages/${id}/$ack`)
        .set('authorization', await b.ehr.bearer())
        .expect(200);
      taken.push(id);
    }
    return { sent, taken };
  }

  /** Everything handed over so far was handed over 31 days ago (RETENTION_* default to 30 days). */
  async function age() {
    const { a, b } = t;
    await a.gw.app.ctx.pool.query(
      `UPDATE deliveries SET delivered_at = delivered_at - ${AGED} WHERE purged_at IS NULL`,
    );
    await a.gw.app.ctx.pool.query(
      `UPDATE imaging_deliveries SET delivered_at = delivered_at - ${AGED} WHERE purged_at IS NULL`,
    );
    await b.gw.app.ctx.pool.query(
      `UPDATE inbox_messages SET acknowledged_at = acknowledged_at - ${AGED} WHERE state = 'acknowledged' AND purged_at IS NULL`,
    );
  }

  it(
    'frees the space of purged content, keeps what is still needed, and answers 410 for what is gone',
    { timeout: 300_000 },
    async () => {
      const { a, b } = t;
      // Kept: a message B's EHR never takes, sent first.
      const kept = await inboxId(
        b,
        (await delivered(a, await submit(a, b, messageBundle([b.gw.config.org], 600)))).delivery,
      );
      // The first bundle (held below) goes alone before the rest, so its envelope sits at the start of each
      // side's TOAST file, as the held content of a long-running system mostly does: VACUUM can only return
      // a file's empty tail, and B, receiving concurrently, would otherwise store it anywhere.
      const first = await sendAndTake([{ body: BUNDLES[0]! }]);
      const rest = await sendAndTake([...BUNDLES.slice(1).map((body) => ({ body })), { body: DICOM, imaging: true }]);
      const sent = [...first.sent, ...rest.sent];
      const taken = [...first.taken, ...rest.taken];
      expect(sent.every((x) => x.receipt.startsWith('{'))).toBe(true); // protocol v2: dual-signed receipts
      const imagingFile = (
        await b.gw.app.ctx.pool.query<{ content_path: string }>('SELECT content_path FROM imaging_inbox_content')
      ).rows[0]!.content_path;
      expect(statSync(imagingFile).size).toBeGreaterThan(DICOM.length);
      await age();
      // A legal hold on the first exchange, on both sides (B knows it by the same exchange id).
      const heldExchange = sent[0]!.location.split('/').pop()!;
      for (const p of [a, b]) {
        const out = await runCli(['retention', 'hold', heldExchange], cleanEnv({ DATABASE_URL: p.gw.databaseUrl }));
        expect(out.stdout, out.stderr).toContain(`exchange ${heldExchange} held`);
      }
      const before = {
        deliveries: await size(a, 'delivery_envelopes'),
        inbox: await size(b, 'inbox_envelopes'),
        inboxFiles: imagingBytes(b),
      };

      expect(await purgeExpired(a.gw.app.ctx)).toEqual({
        bundle: BUNDLES.length, // all but the held one, and the untaken message (A has its receipt)
        imaging: 1,
        inbox: 0,
        'inbox-imaging': 0,
      });
      expect(await purgeExpired(b.gw.app.ctx)).toEqual({
        bundle: 0,
        imaging: 0,
        inbox: BUNDLES.length - 1,
        'inbox-imaging': 1,
      });

      // Space: B's imaging file at once (A removed its sealed copy on delivery), the tables after VACUUM (autovacuum's work in production).
      expect(existsSync(imagingFile)).toBe(false);
      expect(imagingBytes(b)).toBeLessThan(before.inboxFiles - DICOM.length);
      const bundleBytes = BUNDLES.reduce((n, x) => n + x.length, 0);
      expect(await freedByVacuum(a, 'delivery_envelopes', before.deliveries, bundleBytes / 2)).toBeGreaterThan(
        bundleBytes / 2,
      );
      expect(await freedByVacuum(b, 'inbox_envelopes', before.inbox, bundleBytes / 2)).toBeGreaterThan(bundleBytes / 2);

      // Still needed: the message B's EHR has not taken, and the held exchange.
      for (const id of [kept, taken[0]])
        await request(b.gw.app.server)
          .get(`/inbox/messages/${id}`)
          .set('authorization', await b.ehr.bearer())
          .expect(200);

      // Reads of purged content: 410 Gone with an OperationOutcome, audited; the status and receipt remain.
      const bAuth = await b.ehr.bearer();
      const gone = await request(b.gw.app.server).get(`/inbox/messages/${taken[1]}`).set('authorization', bAuth);
      expect(gone.status).toBe(410);
      expect(gone.body.resourceType).toBe('OperationOutcome');
      const goneImaging = await request(b.gw.app.server)
        .get(`/inbox/messages/${taken.at(-1)}/content`)
        .set('authorization', bAuth);
      expect(goneImaging.status).toBe(410);
      const status = await request(a.gw.app.server)
        .get(sent[1]!.location)
        .set('authorization', await a.ehr.bearer())
        .expect(200);
      expect(status.body.recipients[0].receipt).toBe(sent[1]!.receipt);
      expect(Date.parse(status.body.recipients[0].purged_at)).toBeLessThanOrEqual(Date.now());
      const studyStatus = await request(a.gw.app.server)
        .get(sent.at(-1)!.location)
        .set('authorization', await a.ehr.bearer())
        .expect(200);
      expect(studyStatus.body.recipients[0].purged_at).toBeTruthy();

      // The audit log names what is gone, batch by batch (RETENTION_BATCH=2), and still verifies.
      const purgedEntries = await entries(b, 'content.purged');
      expect(purgedEntries.length).toBe(Math.ceil((BUNDLES.length - 1) / 2) + 1);
      const named = purgedEntries.flatMap((e) => e.entity.map((x: { id: string }) => x.id));
      expect(named.sort()).toEqual(taken.slice(1).sort());
      expect((await entries(b, 'retention.held')).map((e) => e.entity[0].id)).toEqual([heldExchange]);
      expect((await entries(b, 'inbox.read')).some((e) => e.detail?.reason === 'CONTENT_PURGED')).toBe(true);
      await expectAuditVerifies();

      // The counter comes from the tombstones, so every process reports the same.
      const state = await readState(a.gw.app.ctx.pool);
      expect(state.purged).toContainEqual({ kind: 'bundle', count: BUNDLES.length });
      expect(state.purged).toContainEqual({ kind: 'imaging', count: 1 });

      // Released, the held exchange is purged by the next run.
      expect(await releaseHold(b.gw.app.ctx, heldExchange, 'test')).toBe(true);
      expect((await purgeExpired(b.gw.app.ctx)).inbox).toBe(1);
      expect((await entries(b, 'retention.released')).length).toBe(1);
    },
  );

  it(
    'purges in small batches while A keeps accepting submissions, and never what is not handed over',
    { timeout: 300_000 },
    async () => {
      const { a, b } = t;
      const old = await sendAndTake(
        Array.from({ length: 9 }, (_, i) => ({ body: messageBundle([b.gw.config.org], 4_000, `old ${i}`) })),
      );
      await age();
      const before = (await entries(b, 'content.purged')).length;
      // A stop request (graceful shutdown) or a spent budget ends a run before its next batch.
      const none = { bundle: 0, imaging: 0, inbox: 0, 'inbox-imaging': 0 };
      expect(await purgeExpired(b.gw.app.ctx, { signal: AbortSignal.abort() })).toEqual(none);
      expect(await purgeExpired(b.gw.app.ctx, { budgetMs: 0 })).toEqual(none);

      let intakeRunning = true;
      const intake = (async () => {
        const fresh: string[] = [];
        while (intakeRunning || fresh.length < 5)
          fresh.push(await submit(a, b, messageBundle([b.gw.config.org], 600, `during ${fresh.length}`)));
        return fresh;
      })();
      // A: the worker's own retention_purge task (what the cron line queues); B: the purge called directly.
      const purgedOnA = async () =>
        (
          await a.gw.app.ctx.pool.query<{ n: number }>(
            'SELECT count(*)::int AS n FROM deliveries WHERE purged_at IS NOT NULL',
          )
        ).rows[0]!.n;
      const purgedBefore = await purgedOnA();
      await a.gw.app.ctx.queue.addJob(RETENTION_PURGE_TASK, {});
      const [, purgedB] = await Promise.all([
        waitFor('the worker purge', async () =>
          (await purgedOnA()) - purgedBefore === old.sent.length ? true : undefined,
        ),
        purgeExpired(b.gw.app.ctx),
      ]);
      intakeRunning = false;
      const fresh = await intake;
      expect(purgedB.inbox).toBe(old.taken.length);
      // Every submission made during the purge was accepted (submit expects 202) and is delivered.
      for (const l of fresh) await delivered(a, l);
      expect((await entries(b, 'content.purged')).length - before).toBe(Math.ceil(old.taken.length / 2));

      // Only what was handed over before the cutoff is gone: the fresh deliveries, the held exchange and B's untaken messages keep their content.
      const { rows: held } = await a.gw.app.ctx.pool.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM deliveries d JOIN delivery_envelopes e ON e.delivery_id = d.id WHERE purged_at IS NULL',
      );
      expect(held[0]!.n).toBe(fresh.length + 1); // and the exchange A still holds
      const { rows: untaken } = await b.gw.app.ctx.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM inbox_messages WHERE state = 'received' AND purged_at IS NOT NULL`,
      );
      expect(untaken[0]!.n).toBe(0);
      await expectAuditVerifies();

      // A run that finds nothing due does nothing.
      expect(Object.values(await purgeExpired(b.gw.app.ctx)).every((n) => n === 0)).toBe(true);
    },
  );

  async function entries(p: Peer, type: string) {
    const { rows } = await p.gw.app.ctx.pool.query<{ entry: string }>('SELECT entry FROM audit_log WHERE type = $1', [
      type,
    ]);
    return rows.map((r) => JSON.parse(r.entry));
  }

  async function expectAuditVerifies() {
    for (const p of [t.a, t.b]) {
      const verify = await runCli(['audit', 'verify', '--db'], cleanEnv({ DATABASE_URL: p.gw.databaseUrl }));
      expect(verify.stdout, verify.stderr).toMatch(/^OK: /);
      expect(verify.code).toBe(0);
    }
  }
});
