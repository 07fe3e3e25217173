import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { importJWK, type JWK } from 'jose';
import { startTwoGateways, type TwoGateways } from '../helpers/two-gateways.ts';
import { waitFor } from '../helpers/outbound.ts';
import { cleanEnv, runCli } from '../helpers/cli.ts';
import { DICOM_DIR } from '../helpers/imaging.ts';
import { verifyReceipt } from '../../src/protocol/receipt.ts';

/**
 * Operator retry of imaging deliveries through the same admin API and CLI as
 * bundle deliveries: a delivery the recipient refused (400) is failed; once
 * the recipient is fixed, a retry sends the same stored sealed file under the
 * same delivery id and B's verified receipt settles it.
 */
const CT = readFileSync(join(DICOM_DIR, 'CT1_UNC.explicit_little_endian.dcm'));

interface Row {
  id: string;
  state: string;
  content_path: string;
  last_error: string | null;
  round_attempts: number;
  receipt: string | null;
  manifest_digest: string;
}

describe('imaging: failed deliveries are listed and retried by an operator', () => {
  let t: TwoGateways;
  /** While set, A's fetch gets a permanent 400 from B's imaging inbox (the recipient is "broken"). */
  let refuse = true;
  beforeAll(async () => {
    t = await startTwoGateways();
    const ctx = t.a.gw.app.ctx;
    const real = ctx.fetch;
    ctx.fetch = (async (url: string | URL | Request, init?: RequestInit) => {
      if (refuse && String(url).endsWith('/inbox/imaging')) {
        return new Response(
          JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid' }] }),
          { status: 400, headers: { 'content-type': 'application/fhir+json' } },
        );
      }
      return real(url as string, init);
    }) as typeof fetch;
  }, 60_000);
  afterAll(async () => t?.close());

  const row = async (id: string): Promise<Row> =>
    (
      await t.a.gw.app.ctx.pool.query<Row>(
        'SELECT d.*, x.content_digest FROM imaging_deliveries d JOIN imaging_exchanges x ON x.id = d.exchange_id WHERE d.id = $1',
        [id],
      )
    ).rows[0]!;

  /** Send CT to B while B refuses: the delivery ends failed (one permanent attempt) and its sealed file stays. */
  async function failedDelivery(): Promise<Row> {
    refuse = true;
    const res = await request(t.a.gw.app.server)
      .post(`/imaging?recipient=${encodeURIComponent(t.b.gw.config.org)}`)
      .set('authorization', await t.a.ehr.bearer())
      .set('content-type', 'application/dicom')
      .send(CT);
    expect(res.status).toBe(202);
    const exchange = (res.headers['content-location'] as string).split('/').pop()!;
    const { rows } = await t.a.gw.app.ctx.pool.query<{ id: string }>(
      'SELECT id FROM imaging_deliveries WHERE exchange_id = $1',
      [exchange],
    );
    const id = rows[0]!.id;
    const d = await waitFor(
      `imaging delivery ${id} failed`,
      async () => {
        const r = await row(id);
        return r.state === 'failed' ? r : undefined;
      },
      30_000,
    );
    expect(d.last_error).toBe('HTTP 400');
    expect(existsSync(d.content_path)).toBe(true);
    return d;
  }

  /** Wait for delivered, then check B's receipt: B's signature, this delivery id, the manifest and content digests. */
  async function deliveredWithVerifiedReceipt(id: string): Promise<void> {
    const d = await waitFor(
      `imaging delivery ${id} delivered`,
      async () => {
        const r = await row(id);
        return r.state !== 'pending' ? r : undefined;
      },
      30_000,
    );
    expect(d.state).toBe('delivered');
    const bJwks = (await (await fetch(`${t.b.gw.url}/.well-known/jwks.json`)).json()) as {
      keys: Array<JWK & { kid: string }>;
    };
    const claims = await verifyReceipt(
      d.receipt!,
      async (h) =>
        importJWK(
          bJwks.keys.find((k) => k.kid === h.kid)!,
          h.alg,
        ),
      {
        iss: t.b.gw.config.org,
        aud: t.a.gw.config.org,
        delivery: id,
        digest: d.manifest_digest,
      },
    );
    expect((claims as unknown as { content_digest: string }).content_digest).toBe(
      (d as unknown as { content_digest: string }).content_digest,
    );
    // Delivered: the sealed file on A is removed; the attempt log shows the refusal, then the delivery.
    expect(existsSync(d.content_path)).toBe(false);
    const { rows } = await t.a.gw.app.ctx.pool.query(
      'SELECT outcome, http_status FROM imaging_delivery_attempts WHERE delivery_id = $1 ORDER BY attempt',
      [id],
    );
    expect(rows[0]).toMatchObject({ outcome: 'permanent', http_status: 400 });
    expect(rows.at(-1)).toMatchObject({ outcome: 'delivered' });
    // B holds exactly one message for this delivery id, and it opens to the bytes sent.
    const auth = await t.b.ehr.bearer();
    const list = await request(t.b.gw.app.server)
      .get('/inbox/messages?_count=1000')
      .set('authorization', auth)
      .expect(200);
    const messages = list.body.messages.filter((m: { delivery: string }) => m.delivery === id);
    expect(messages).toHaveLength(1);
    const content = await request(t.b.gw.app.server)
      .get(`/inbox/messages/${messages[0].id}/content`)
      .set('authorization', auth)
      .buffer(true)
      .parse((res, cb) => {
        const c: Buffer[] = [];
        res.on('data', (x: Buffer) => c.push(x));
        res.on('end', () => cb(null, Buffer.concat(c)));
      });
    expect(content.status).toBe(200);
    expect((content.body as Buffer).equals(CT)).toBe(true);
  }

  const retriedAudit = async (id: string) =>
    (
      await t.a.gw.app.ctx.pool.query<{ entry: string }>(
        `SELECT entry FROM audit_log WHERE type = 'delivery.retried' AND entry LIKE $1`,
        [`%${id}%`],
      )
    ).rows.map((r) => JSON.parse(r.entry));

  it(
    'admin API: lists it as a failed imaging delivery, retries it, and it is delivered with a verified receipt',
    { timeout: 90_000 },
    async () => {
      const d = await failedDelivery();
      const admin = await t.a.admin.bearer();
      const list = await request(t.a.gw.app.server)
        .get('/admin/deliveries?state=failed')
        .set('authorization', admin)
        .expect(200);
      expect(list.body.deliveries).toContainEqual(
        expect.objectContaining({ id: d.id, kind: 'imaging', state: 'failed', last_error: 'HTTP 400' }),
      );

      // Not an admin: refused. The recipient is fixed, then the operator retries.
      await request(t.a.gw.app.server)
        .post(`/admin/deliveries/${d.id}/retry`)
        .set('authorization', await t.a.ehr.bearer())
        .expect(403);
      refuse = false;
      const res = await request(t.a.gw.app.server).post(`/admin/deliveries/${d.id}/retry`).set('authorization', admin);
      expect(res.status, res.text).toBe(202);
      expect(res.body).toEqual({ delivery: d.id, kind: 'imaging', state: 'pending' });
      await deliveredWithVerifiedReceipt(d.id);
      const audit = await retriedAudit(d.id);
      expect(audit).toHaveLength(1);
      expect(JSON.stringify(audit[0])).toContain('"kind":"imaging"');

      // Retrying a delivery that is not failed: a 409 OperationOutcome, nothing re-queued, nothing audited.
      const again = await request(t.a.gw.app.server)
        .post(`/admin/deliveries/${d.id}/retry`)
        .set('authorization', admin);
      expect(again.status).toBe(409);
      expect(again.body.resourceType).toBe('OperationOutcome');
      expect(again.body.issue[0].details.coding[0].code).toBe('CONFLICT');
      expect(again.body.issue[0].diagnostics).toMatch(/imaging delivery .* is delivered; only failed/);
      expect(await retriedAudit(d.id)).toHaveLength(1);
      expect((await row(d.id)).state).toBe('delivered');
    },
  );

  it(
    'CLI (a separate process): deliveries list shows the kind; deliveries retry finds the imaging delivery and re-queues it',
    { timeout: 120_000 },
    async () => {
      const d = await failedDelivery();
      const env = cleanEnv({ DATABASE_URL: t.a.gw.databaseUrl });
      const list = await runCli(['deliveries', 'list', '--state', 'failed'], env);
      expect(list.code, list.stderr).toBe(0);
      expect(list.stdout).toMatch(/^ID\s+EXCHANGE\s+PARTNER\s+STATE\s+KIND\s+ATTEMPTS/);
      expect(list.stdout).toMatch(new RegExp(`^${d.id}\\s+\\S+\\s+\\S+\\s+failed\\s+imaging\\s+\\d+\\s+HTTP 400`, 'm'));

      refuse = false;
      const retry = await runCli(['deliveries', 'retry', d.id], env);
      expect(retry.code, retry.stderr).toBe(0);
      expect(retry.stdout).toContain(`imaging delivery ${d.id} queued`);
      await deliveredWithVerifiedReceipt(d.id);
      // Audited as the person who ran the CLI (cli:NAME), with the kind of delivery.
      expect((await retriedAudit(d.id))[0]).toMatchObject({
        agent: { type: 'user', id: expect.stringMatching(/^cli:/) },
        detail: { kind: 'imaging' },
      });

      // Not failed any more: refused with a message and a non-zero exit.
      const again = await runCli(['deliveries', 'retry', d.id], env);
      expect(again.code).toBe(1);
      expect(again.stderr).toMatch(/is delivered; only failed deliveries can be retried/);
    },
  );

  it(
    'refuses to retry when the sealed content file is gone (API 409, CLI exit 1), leaving the delivery failed',
    { timeout: 90_000 },
    async () => {
      const d = await failedDelivery();
      unlinkSync(d.content_path);
      refuse = false;
      const res = await request(t.a.gw.app.server)
        .post(`/admin/deliveries/${d.id}/retry`)
        .set('authorization', await t.a.admin.bearer());
      expect(res.status).toBe(409);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.body.issue[0].diagnostics).toMatch(/sealed content file is gone/);
      const cli = await runCli(['deliveries', 'retry', d.id], cleanEnv({ DATABASE_URL: t.a.gw.databaseUrl }));
      expect(cli.code).toBe(1);
      expect(cli.stderr).toMatch(/sealed content file is gone/);
      const after = await row(d.id);
      expect(after).toMatchObject({ state: 'failed', round_attempts: 1 });
      expect(await retriedAudit(d.id)).toHaveLength(0);
      const jobs = await t.a.gw.app.ctx.pool.query(
        `SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE key = $1`,
        [d.id],
      );
      expect(jobs.rows[0].n).toBe(0);
    },
  );
});
