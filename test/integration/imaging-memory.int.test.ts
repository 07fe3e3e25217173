import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTwoGateways, type TwoGateways } from '../helpers/two-gateways.ts';
import { waitFor } from '../helpers/outbound.ts';
import { writeSyntheticDicom } from '../helpers/imaging.ts';

/**
 * The small version of the 1 GiB benchmark (bench/imaging.ts measures peak
 * RSS per gateway process): 64 MiB from A to B and back out to B's EHR, with
 * both gateways in this process, sampling its RSS. Holding the study in
 * memory anywhere (body, JWE, plaintext) would cost several times 64 MiB;
 * streaming stays far below.
 */
const SIZE = 64 * 1024 * 1024;

describe('imaging at constant memory (64 MiB, in-process)', () => {
  let t: TwoGateways;
  let dir: string;
  beforeAll(async () => {
    t = await startTwoGateways();
    dir = mkdtempSync(join(tmpdir(), 'imaging-mem-'));
  }, 60_000);
  afterAll(async () => {
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("A intake → B → B's EHR with RSS growth well under the study size times two", { timeout: 120_000 }, async () => {
    const file = join(dir, 'study.dcm');
    await writeSyntheticDicom(file, SIZE, 'memory');
    const source = createHash('sha256');
    for await (const c of createReadStream(file)) source.update(c as Buffer);
    const expected = source.digest('base64url');
    const token = await t.a.ehr.token();
    const base = process.memoryUsage().rss;
    let peak = base;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpRequest(
          `${t.a.gw.url}/imaging?recipient=${encodeURIComponent(t.b.gw.config.org)}`,
          {
            method: 'POST',
            headers: {
              authorization: `Bearer ${token}`,
              'content-type': 'application/dicom',
              'content-length': String(statSync(file).size),
            },
          },
          (res) => (res.resume(), resolve(res.statusCode!)),
        );
        req.on('error', reject);
        createReadStream(file).pipe(req);
      });
      expect(status).toBe(202);
      const bToken = await t.b.ehr.token();
      const message = await waitFor(
        'B has it',
        async () => {
          const list = (await (
            await fetch(`${t.b.gw.url}/inbox/messages`, { headers: { authorization: `Bearer ${bToken}` } })
          ).json()) as { messages: Array<{ id: string }> };
          return list.messages[0];
        },
        60_000,
      );
      const res = await fetch(`${t.b.gw.url}/inbox/messages/${message.id}/content`, {
        headers: { authorization: `Bearer ${bToken}` },
      });
      const got = createHash('sha256');
      let length = 0;
      for await (const c of res.body!) {
        got.update(c);
        length += c.byteLength;
      }
      expect(length).toBe(SIZE);
      expect(got.digest('base64url')).toBe(expected);
    } finally {
      clearInterval(sampler);
    }
    const growth = (peak - base) / 1024 / 1024;
    // Buffered anywhere, this transfer needs over 300 MiB (body + JWE on each side); streamed, GC slack only.
    expect(growth, `RSS grew ${growth.toFixed(0)} MiB`).toBeLessThan(128);
  });
});
