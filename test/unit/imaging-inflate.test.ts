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

/**
 * While `work` runs, the time the event loop spent stalled (gaps of more than 10 ms between runs of a 1 ms
 * timer, summed) and the time `work` took. On the loop, the checks stall it nearly the whole time; off it,
 * only noise (a busy machine, a garbage collection) does.
 */
async function loopStall(work: () => Promise<unknown>): Promise<{ stalled: number; elapsed: number }> {
  let last = performance.now();
  let stalled = 0;
  const gap = (now: number) => {
    if (now - last > 10) stalled += now - last;
    last = now;
  };
  const tick = setInterval(() => gap(performance.now()), 1);
  const start = performance.now();
  try {
    await work();
  } finally {
    clearInterval(tick);
  }
  gap(performance.now());
  return { stalled, elapsed: performance.now() - start };
}

describe('deflated DICOM is inflated off the event loop', () => {
  it('checks four 60 MiB deflated files at once without stalling the event loop', async () => {
    const file = deflatedDicom(60 * MiB);
    expect(file.length).toBeLessThan(128 * 1024);
    await check(file); // warm: the workers start
    let instances: Awaited<ReturnType<typeof check>>[] = [];
    const { stalled, elapsed } = await loopStall(async () => {
      instances = await Promise.all([1, 2, 3, 4].map(() => check(file)));
    });
    expect(instances.map((i) => [i.transferSyntax, i.modality, i.length])).toEqual(
      Array(4).fill(['1.2.840.10008.1.2.1.99', 'ECG', file.length]),
    );
    // Inflating on the event loop stalled it for the whole time (each file blocked it in turn). The bound leaves
    // room for a loaded machine, where other processes also delay the timer.
    expect(stalled, `stalled ${Math.round(stalled)} of ${Math.round(elapsed)} ms`).toBeLessThan(elapsed * 0.8);
  });

  it('refuses a decompression bomb beyond DICOM_INFLATE_MAX with 413, also four at once, without stalling', async () => {
    const bomb = deflatedDicom(100 * MiB);
    const { stalled, elapsed } = await loopStall(async () => {
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
    expect(stalled, `stalled ${Math.round(stalled)} of ${Math.round(elapsed)} ms`).toBeLessThan(elapsed * 0.8);
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
