import { describe, expect, it } from 'vitest';
import { liveQueueBytes } from '../../src/outbound/imaging/live.ts';

const MIB = 1024 * 1024;

describe('live transmission queues (cut-through imaging)', () => {
  it('gives each recipient 4 MiB while a submission has few', () => {
    expect(liveQueueBytes(1)).toBe(4 * MIB);
    expect(liveQueueBytes(4)).toBe(4 * MIB);
  });

  it('shares 16 MiB among many recipients, down to 256 KiB each', () => {
    expect(liveQueueBytes(8)).toBe(2 * MIB);
    expect(liveQueueBytes(50)).toBe(Math.floor((16 * MIB) / 50));
    expect(liveQueueBytes(500)).toBe(256 * 1024);
    for (let n = 1; n <= 64; n++) expect(n * liveQueueBytes(n)).toBeLessThanOrEqual(16 * MIB);
  });
});
