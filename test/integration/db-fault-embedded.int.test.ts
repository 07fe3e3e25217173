/**
 * The embedded PostgreSQL's postmaster is killed (SIGKILL) while EHR clients
 * post bundles to a `gateway start` process. Nothing is simulated: the
 * postmaster the gateway started is killed, its backends die of it, the
 * gateway's supervisor starts PostgreSQL again (crash recovery replays the
 * WAL) and the pool and the job worker reconnect by themselves.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { exited, waitFor } from '../helpers/cli.ts';
import { freePort } from '../helpers/ports.ts';
import {
  expectAcknowledgedDelivered,
  intakeLoad,
  probeUntilUp,
  startFaultGateway,
  within,
  type FaultGateway,
} from '../helpers/db-fault.ts';

/** The postmaster's child processes (backends, checkpointer, ...), from /proc. */
function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]) === pid;
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** Running: a zombie (exited, not yet reaped by whoever inherited it) holds no session and commits nothing. */
const alive = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[0] !== 'Z';
  } catch {
    return false;
  }
};

async function allGone(pids: number[]): Promise<number> {
  while (pids.some(alive)) await sleep(10);
  return Date.now();
}

describe('embedded PostgreSQL killed under intake load', () => {
  let gw: FaultGateway;
  let pgPort: string;

  beforeAll(async () => {
    pgPort = String(await freePort());
    gw = await startFaultGateway({ EMBEDDED_PG_PORT: pgPort });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('answers 503 while it is down, restarts it within 30 s, loses no accepted exchange, and never exits', async () => {
    const load = intakeLoad(gw);
    await sleep(1_500);
    const postmaster = Number(readFileSync(join(gw.dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
    const old = [postmaster, ...childrenOf(postmaster)];
    expect(old.length).toBeGreaterThan(3); // backends of the pool and the worker, and the auxiliary processes
    const killedAt = Date.now();
    process.kill(postmaster, 'SIGKILL');
    // No commit can happen once every process of the old server is gone, until the new one accepts sessions.
    const [goneAt, { lastFailedAt }] = await Promise.all([allGone(old), probeUntilUp(gw.dbUrl, 30_000)]);
    const readyMs = await waitFor(async () => (await fetch(`${gw.url}/ready`)).status === 200, 30_000, '/ready 200');
    expect(Date.now() - killedAt).toBeLessThan(30_000);
    const recoveredAt = Date.now();
    await sleep(1_500); // accepted again after the restart
    await load.stop();
    expect(gw.child.exitCode, gw.child.output()).toBeNull();
    expect(readyMs).toBeLessThan(30_000);

    const answers = load.answers;
    const down = within(answers, goneAt, lastFailedAt);
    expect(answers.filter((a) => a.status === 0)).toEqual([]); // every request got an HTTP answer
    expect(answers.filter((a) => a.status === 500)).toEqual([]);
    expect(answers.filter((a) => a.status !== 202 && a.status !== 200 && a.status !== 503)).toEqual([]);

    expect(down.filter((a) => a.status !== 503)).toEqual([]); // no 202 (nor anything else) while down
    for (const a of answers.filter((x) => x.status === 503)) {
      expect(a.retryAfter).toBe('5');
      if (a.what === 'intake') {
        expect(JSON.parse(a.body)).toMatchObject({
          resourceType: 'OperationOutcome',
          issue: [{ code: 'transient', details: { coding: [{ code: 'UNAVAILABLE' }] } }],
        });
      }
    }
    expect(answers.some((a) => a.what === 'intake' && a.status === 503)).toBe(true); // the outage was met
    expect(answers.some((a) => a.what === 'intake' && a.status === 202 && a.sentAt > recoveredAt)).toBe(true);

    // Every acknowledged exchange was committed and is delivered to the partner.
    await expectAcknowledgedDelivered(gw, answers);

    // Graceful shutdown still works after a restart: the restarted server is stopped with the gateway.
    gw.child.kill('SIGTERM');
    expect(await exited(gw.child)).toBe(0);
    expect(() => readFileSync(join(gw.dataDir, 'pg', 'postmaster.pid'))).toThrow();
  });
});
