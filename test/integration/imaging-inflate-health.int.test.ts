import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { startTwoGateways, type TwoGateways } from '../helpers/two-gateways.ts';
import { deflatedDicom } from '../helpers/imaging.ts';
import { waitFor } from '../helpers/outbound.ts';

const MiB = 1024 * 1024;

/**
 * GET /health fired every 10 ms from a thread of its own (the gateway runs in
 * this process: a probe on the test's event loop would wait with it), each
 * timed from the moment it was due, so a stalled event loop shows in every
 * probe that falls due while it stalls.
 */
const PROBER = `
const { parentPort, workerData } = require('node:worker_threads');
const http = require('node:http');
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const samples = [];
let inFlight = 0;
let stopping = false;
const finish = () => { if (stopping && inFlight === 0) { agent.destroy(); parentPort.postMessage(samples); } };
const timer = setInterval(() => {
  const due = performance.now();
  inFlight++;
  http.get(workerData + '/health', { agent }, (res) => {
    res.resume();
    res.on('end', () => { samples.push(performance.now() - due); inFlight--; finish(); });
  }).on('error', () => { samples.push(Infinity); inFlight--; finish(); });
}, 10);
parentPort.on('message', () => { stopping = true; clearInterval(timer); finish(); });
`;

async function probing<T>(url: string, work: () => Promise<T>): Promise<{ result: T; latencies: number[] }> {
  const worker = new Worker(PROBER, { eval: true, workerData: url });
  const latencies = new Promise<number[]>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  try {
    const result = await work();
    worker.postMessage('stop');
    return { result, latencies: (await latencies).sort((x, y) => x - y) };
  } finally {
    await worker.terminate();
  }
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

describe('deflated DICOM inflation does not stall the gateway', () => {
  let t: TwoGateways;
  beforeAll(async () => {
    t = await startTwoGateways();
  }, 60_000);
  afterAll(async () => t?.close());

  const post = async (body: Buffer) => {
    const res = await fetch(`${t.a.gw.url}/imaging?recipient=${encodeURIComponent(t.b.gw.config.org)}`, {
      method: 'POST',
      headers: { authorization: await t.a.ehr.bearer(), 'content-type': 'application/dicom' },
      body,
    });
    return {
      status: res.status,
      body: (await res.json()) as { issue: Array<{ details: { coding: Array<{ code: string }> } }> },
    };
  };

  it(
    'answers /health in under 50 ms (median) while four decompression bombs at a time are refused with 413, audited',
    { timeout: 120_000 },
    async () => {
      const bomb = deflatedDicom(100 * MiB); // about 100 KB on the wire, 100 MiB inflated (DICOM_INFLATE_MAX is 64 MiB)
      expect(bomb.length).toBeLessThan(200 * 1024);
      await post(bomb); // warm: the inflation workers start
      const rounds = 4;
      const { result, latencies } = await probing(t.a.gw.url, async () => {
        const answers = [];
        for (let r = 0; r < rounds; r++) answers.push(...(await Promise.all([1, 2, 3, 4].map(() => post(bomb)))));
        return answers;
      });
      expect(result.map((a) => [a.status, a.body.issue[0]?.details.coding[0]?.code])).toEqual(
        Array(rounds * 4).fill([413, 'PAYLOAD_TOO_LARGE']),
      );
      // Inflating on the event loop holds every probe that falls due meanwhile: the median was hundreds of ms.
      expect(latencies.length).toBeGreaterThan(20);
      expect(percentile(latencies, 0.5), `probes (ms): ${latencies.map((x) => Math.round(x)).join(' ')}`).toBeLessThan(
        50,
      );
      const { rows } = await t.a.gw.app.ctx.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM audit_log
          WHERE type = 'intake.refused' AND entry::jsonb #>> '{detail,code}' = 'PAYLOAD_TOO_LARGE'
            AND entry::jsonb #>> '{detail,route}' = '/imaging'`,
      );
      expect(rows[0]?.n).toBe(rounds * 4 + 1);
    },
  );

  it(
    'accepts a deflated file that inflates to 60 MiB, checked in a worker on both sides',
    { timeout: 60_000 },
    async () => {
      const res = await post(deflatedDicom(60 * MiB, '2.25.60606060'));
      expect(res.status).toBe(202);
      // B rechecks the delivered content (inflating it in its own workers) before it stores and receipts it.
      await waitFor(
        'the delivery to B',
        async () => {
          const { rows } = await t.a.gw.app.ctx.pool.query<{ state: string }>('SELECT state FROM imaging_deliveries');
          return rows[0]?.state === 'delivered' ? true : undefined;
        },
        30_000,
      );
      const { rows } = await t.b.gw.app.ctx.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM inbox_messages');
      expect(rows[0]?.n).toBe(1);
    },
  );
});
