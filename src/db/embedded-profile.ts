import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';

/**
 * small: a light footprint for laptops, CI and small sites (the default).
 * throughput: the WAL room and preparation the intake latency targets need
 * (docs/decisions/0007); costs about 2 GB of disk from the first start.
 */
export const EMBEDDED_PG_PROFILES = ['small', 'throughput'] as const;
export type EmbeddedPgProfile = (typeof EMBEDDED_PG_PROFILES)[number];

const CHECKPOINT_COMPLETION = 0.9;
const WAL_MB: Record<EmbeddedPgProfile, { max: number; min: number }> = {
  small: { max: 256, min: 64 },
  throughput: { max: 2048, min: 256 },
};

/** The flags both profiles share, then the WAL size of the profile (twice it while the WAL is prepared). */
export function profileFlags(profile: EmbeddedPgProfile, preparing = false): string[] {
  const wal = WAL_MB[profile];
  return [
    '-c',
    'max_connections=200',
    // Every accepted bundle writes its sealed envelopes (tens of KB) to the WAL: give the WAL room, so
    // checkpoints come rarely and spread out, and segments are recycled instead of created and zeroed.
    '-c',
    `max_wal_size=${preparing ? 2 * wal.max : wal.max}MB`,
    '-c',
    `min_wal_size=${wal.min}MB`,
    '-c',
    'wal_buffers=16MB',
    '-c',
    `checkpoint_completion_target=${CHECKPOINT_COMPLETION}`,
    // Small on purpose. Each page PostgreSQL adds to a table is first written as zeros through the OS
    // page cache, with no writeback hint; that zero page stays dirty until the buffer holding the real
    // page is evicted. So up to shared_buffers of dirty pages pile up, and the kernel flushes them all
    // at once when they are 30 s old, stalling COMMITs. At 16MB the bursts are 16 MB; the pages evicted
    // early are still read from the OS page cache.
    '-c',
    'shared_buffers=16MB',
    // Start writeback of heap pages as they are written, instead of letting the kernel flush 30 s of
    // them at once (which stalls COMMITs).
    '-c',
    'backend_flush_after=256kB',
    // The job queue table grows from empty in seconds under load; until it is analysed the planner
    // takes it for tiny and graphile-worker's add_jobs scans it whole.
    '-c',
    'autovacuum_naptime=15s',
  ];
}

/** Records that the WAL was prepared for the throughput profile; a small-profile server trims it again. */
const markerOf = (dataDir: string) => join(dataDir, 'pg-wal-prepared');

export function walNeedsPreparation(dataDir: string, profile: EmbeddedPgProfile): boolean {
  const marker = markerOf(dataDir);
  if (profile === 'small') {
    rmSync(marker, { force: true });
    return false;
  }
  return !existsSync(marker) || readFileSync(marker, 'utf8').trim() !== String(WAL_MB.throughput.max);
}

export function markWalPrepared(dataDir: string): void {
  writeFileSync(markerOf(dataDir), `${WAL_MB.throughput.max}\n`);
}

/**
 * A cluster without WAL segments to recycle has, until its first checkpoint
 * has ended, to create and zero-fill a 16 MiB segment while commits wait.
 * PostgreSQL requests that checkpoint after max_wal_size / (1 +
 * checkpoint_completion_target) of WAL and it ends a completion_target
 * further on: about max_wal_size in all. A checkpoint keeps only about
 * max_wal_size / (1 + completion_target) segments for reuse, so the cluster
 * is prepared once by a server started with twice max_wal_size: it switches
 * through that many segments and checkpoints, leaving them recycled, as on a
 * server that has been running for a while. Costs a few seconds and about
 * max_wal_size of disk, which the cluster may use anyway.
 */
export async function preallocateWal(adminUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    for (let i = 0; i < WAL_MB.throughput.max / 16 + 8; i++) {
      await client.query('SELECT pg_current_xact_id()'); // some WAL, so that the switch below moves on
      await client.query('SELECT pg_switch_wal()');
    }
    await client.query('CHECKPOINT');
  } finally {
    await client.end();
  }
}
