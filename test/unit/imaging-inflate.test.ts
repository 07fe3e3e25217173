import { describe, expect, it } from 'vitest';
import { DicomStreamCheck, type DicomLimits } from '../../src/imaging/dicom.ts';
import { InflatePool } from '../../src/imaging/inflate-pool.ts';
import { GatewayError } from '../../src/errors.ts';
import { deflatedDicom } from '../helpers/imaging.ts';

const MiB = 1024 * 1024;
const LIMITS: DicomLimits = {
  maxBytes: 4 * 1024 * MiB,
  headBytes: 4 * MiB,
  inflateMax: 64 * MiB,
  inflateConcurrency: 2,
};

async function check(bytes: Buffer) {
  const c = new DicomStreamCheck(LIMITS);
  c.push(bytes);
  return (await c.end()).instance;
}

/** The longest the event loop went without running a 1 ms timer while `work` ran, and how long `work` took. */
async function loopStall(work: () => Promise<unknown>): Promise<{ maxGap: number; elapsed: number }> {
  let last = performance.now();
  let maxGap = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
  }, 1);
  const start = performance.now();
  try {
    await work();
  } finally {
    clearInterval(tick);
  }
  return { maxGap: Math.max(maxGap, performance.now() - last), elapsed: performance.now() - start };
}

describe('deflated DICOM is inflated off the event loop', () => {
  it('checks four 60 MiB deflated files at once without stalling the event loop', async () => {
    const file = deflatedDicom(60 * MiB);
    expect(file.length).toBeLessThan(128 * 1024);
    await check(file); // warm: the workers start
    let instances: Awaited<ReturnType<typeof check>>[] = [];
    const { maxGap, elapsed } = await loopStall(async () => {
      instances = await Promise.all([1, 2, 3, 4].map(() => check(file)));
    });
    expect(instances.map((i) => [i.transferSyntax, i.modality, i.length])).toEqual(
      Array(4).fill(['1.2.840.10008.1.2.1.99', 'ECG', file.length]),
    );
    // Inflating on the event loop stalls it for the whole time (each file blocks it in turn).
    expect(maxGap).toBeLessThan(elapsed / 4);
  });

  it('refuses a decompression bomb beyond DICOM_INFLATE_MAX with 413, also four at once, without stalling', async () => {
    const bomb = deflatedDicom(100 * MiB);
    const { maxGap, elapsed } = await loopStall(async () => {
      const errors = await Promise.all(
        [1, 2, 3, 4].map(() =>
          check(bomb).then(
            () => undefined,
            (e: unknown) => e,
          ),
        ),
      );
      for (const err of errors) {
        expect(err).toBeInstanceOf(GatewayError);
        expect((err as GatewayError).code).toBe('PAYLOAD_TOO_LARGE');
        expect((err as GatewayError).status).toBe(413);
        expect((err as GatewayError).message).toMatch(/DICOM_INFLATE_MAX/);
      }
    });
    expect(maxGap).toBeLessThan(elapsed / 4);
  });

  it('inflates at most `size` files at once, lets a few wait, and answers 503 with Retry-After beyond', async () => {
    const pool = new InflatePool(1);
    const bomb = deflatedDicom(100 * MiB);
    const limits = { headBytes: LIMITS.headBytes, inflateMax: LIMITS.inflateMax };
    // One inflating and four waiting (WAITING_PER_WORKER); the sixth is turned away at once.
    const answers = await Promise.all(
      [1, 2, 3, 4, 5, 6].map(() =>
        pool.inspect(bomb, limits).then(
          () => undefined,
          (e: unknown) => e as GatewayError,
        ),
      ),
    );
    expect(answers.map((e) => e?.code)).toEqual([...Array(5).fill('PAYLOAD_TOO_LARGE'), 'UNAVAILABLE']);
    expect(answers[5]?.status).toBe(503);
    expect(answers[5]?.retryAfter).toBe(5);
    // Once the queue drained the pool takes files again, and a good file is identified.
    const identity = await pool.inspect(deflatedDicom(1 * MiB), limits);
    expect(identity).toMatchObject({
      modality: 'ECG',
      sopInstanceUid: '2.25.99887766',
      studyInstanceUid: '2.25.525252',
    });
  });
});
