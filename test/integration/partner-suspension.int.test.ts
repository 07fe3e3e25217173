import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.ts';
import { resumePartner, suspendPartner } from '../../src/outbound/partner-suspension.ts';
import { cleanEnv, runCli } from '../helpers/cli.ts';
import { messageBundle, startOutbound, waitFor, type Outbound } from '../helpers/outbound.ts';

let o: Outbound;
const operator = { type: 'admin' as const, id: 'operator.omar' };

const row = async (id: string) =>
  (
    await o.gw.app.ctx.pool.query<{ state: string; attempts: number }>(
      'SELECT state, attempts FROM deliveries WHERE id = $1',
      [id],
    )
  ).rows[0];

function submit(partner: string): request.Test {
  return request(o.gw.app.server)
    .post(`/exchanges?recipient=${encodeURIComponent(partner)}`)
    .set('authorization', o.ehrAuth)
    .type('application/fhir+json')
    .send(messageBundle([partner]));
}

async function deliveryOf(res: request.Response): Promise<string> {
  const view = await request(o.gw.app.server)
    .get(res.headers['content-location'] as string)
    .set('authorization', o.ehrAuth);
  return view.body.recipients[0].delivery as string;
}

beforeAll(async () => {
  o = await startOutbound({}, 1, { worker: false });
}, 60_000);

afterAll(async () => {
  await o?.close();
});

describe('partner suspension', () => {
  it('holds a pending delivery (no attempt spent, nothing sent) until the partner is resumed, then delivers it', async () => {
    const r = o.recipients[0]!;
    const accepted = await submit(r.id).expect(202);
    const id = await deliveryOf(accepted);
    await suspendPartner(o.gw.app.ctx.pool, r.id, operator);
    await o.startWorker();
    // The worker runs the delivery job meanwhile: it must leave the delivery alone.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(await row(id)).toEqual({ state: 'pending', attempts: 0 });
    expect(r.posts).toEqual([]);
    // Intake to the suspended partner is refused, not queued.
    const refused = await submit(r.id);
    expect(refused.status).toBe(422);
    expect(refused.body.issue[0].details.coding[0].code).toBe('UNKNOWN_RECIPIENT');

    expect(await resumePartner(o.gw.app.ctx.pool, r.id, operator)).toBe(1);
    await waitFor('the held delivery to be delivered', async () =>
      (await row(id))?.state === 'delivered' ? true : undefined,
    );
    expect((await row(id))?.attempts).toBe(1);
    const audit = await o.gw.app.ctx.pool.query<{ entry: string }>(
      `SELECT entry FROM audit_log WHERE type IN ('partner.suspended', 'partner.resumed') ORDER BY idx`,
    );
    expect(audit.rows.map((x) => JSON.parse(x.entry))).toMatchObject([
      { type: 'partner.suspended', agent: { id: 'operator.omar' }, entity: [{ type: 'partner', id: r.id }] },
      { type: 'partner.resumed', agent: { id: 'operator.omar' }, detail: { requeued: 1 } },
    ]);
  });

  it('refuses to suspend a suspended partner or resume an active one (409), and an unknown partner (404)', async () => {
    const id = o.recipients[0]!.id;
    await expect(resumePartner(o.gw.app.ctx.pool, id, operator)).rejects.toMatchObject({ code: 'CONFLICT' });
    await suspendPartner(o.gw.app.ctx.pool, id, operator);
    await expect(suspendPartner(o.gw.app.ctx.pool, id, operator)).rejects.toMatchObject({ code: 'CONFLICT' });
    await expect(suspendPartner(o.gw.app.ctx.pool, 'no-such-partner', operator)).rejects.toBeInstanceOf(GatewayError);
    await resumePartner(o.gw.app.ctx.pool, id, operator);
  });

  it('gateway partners suspend and resume do the same from the CLI, audited with the shell user', async () => {
    const id = o.recipients[0]!.id;
    const env = cleanEnv({ DATABASE_URL: o.gw.databaseUrl });
    const suspended = await runCli(['partners', 'suspend', id], env);
    expect(suspended.stderr).toBe('');
    expect(suspended.code).toBe(0);
    expect(suspended.stdout).toContain(`suspended partner ${id}`);
    expect((await o.gw.app.ctx.directory.get(id))?.status).toBe('suspended');
    const resumed = await runCli(['partners', 'resume', id], env);
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toContain(`resumed partner ${id}; 0 waiting deliveries queued again`);
    expect((await o.gw.app.ctx.directory.get(id))?.status).toBe('active');
    const last = await o.gw.app.ctx.pool.query<{ entry: string }>(
      `SELECT entry FROM audit_log WHERE type = 'partner.resumed' ORDER BY idx DESC LIMIT 1`,
    );
    expect(JSON.parse(last.rows[0]!.entry).agent.id).toMatch(/^cli:/);
  });

  it('gateway audit users add --role operator creates an operator account; an unknown role is a usage error', async () => {
    const env = cleanEnv({ DATABASE_URL: o.gw.databaseUrl });
    const added = await runCli(['audit', 'users', 'add', '--name', 'operator.ola', '--role', 'operator'], env);
    expect(added.code).toBe(0);
    const list = await runCli(['audit', 'users', 'list'], env);
    expect(list.stdout).toMatch(/operator\.ola\s+operator/);
    const bad = await runCli(['audit', 'users', 'add', '--name', 'x.y', '--role', 'root'], env);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('--role must be one of compliance, operator');
  });
});
