/**
 * The floor under imaging throughput on this machine: how fast could
 * ANY implementation of the A-intake → B-available pipeline be here, with the
 * client, gateway A and gateway B on the same cores?
 *
 * Each primitive the pipeline cannot avoid is timed alone, in this process,
 * as CPU time per GiB (bench/imaging-primitives.ts, which also says what each
 * side needs of them). The sum is a lower bound on the CPU the three
 * processes need together. With perfect overlap on every core and no other
 * cost at all (no HTTP, no streams, no GC, no fsync), the best throughput is
 * cores / sum. In the same run the bench measures the raw ceiling exactly as
 * bench/imaging.ts does (read + AES-256-GCM + base64url + write, one pass),
 * and prints the best gateway/raw ratio this machine allows.
 *
 * Then the bare pipeline (bench/imaging-bare.ts): the same three processes
 * doing only those primitives over node:http, with no gateway around them.
 *
 * Run: npm run bench:imaging-floor [-- MiB]   (default 1024 MiB)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { barePipeline } from './imaging-bare.ts';
import { floors, primitiveCosts } from './imaging-primitives.ts';
import { rawCeiling } from './imaging-raw.ts';
import { writeSyntheticDicom } from '../test/helpers/imaging.ts';

const MIB = 1024 * 1024;
const SIZE = Number(process.argv[2] ?? 1024) * MIB;
const root = mkdtempSync(join(tmpdir(), 'gw-bench-floor-'));

async function main(): Promise<void> {
  const cores = cpus().length;
  console.log(
    `# imaging floor: ${SIZE / MIB} MiB; ${cores} cores (${cpus()[0]?.model}); load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  const study = join(root, 'study.dcm');
  await writeSyntheticDicom(study, SIZE);
  const raw = await rawCeiling(study, join(root, 'raw.out'));

  const cost = await primitiveCosts(root, SIZE);
  const { a, b, client, pipeline: floor } = floors(cost);
  const best = (cores / floor) * 1024; // MiB/s with perfect overlap and nothing but the primitives
  for (const [name, s] of Object.entries(cost)) console.log(`| ${name} | ${(s * 1000).toFixed(0)} CPU-ms per GiB |`);
  console.log(
    `| pipeline floor (client + A + B) | ${floor.toFixed(2)} CPU-s per GiB | client ${client.toFixed(2)}, A ${a.toFixed(2)}, B ${b.toFixed(2)} |`,
  );
  console.log(`| best possible on ${cores} cores | ${best.toFixed(0)} MiB/s |`);
  console.log(`| raw ceiling (read + AES-256-GCM + base64url + write) | ${raw.toFixed(0)} MiB/s |`);
  console.log(`| best possible gateway / raw | ${(best / raw).toFixed(2)} |`);
  const bare = await barePipeline(study, root);
  if (!bare.same) throw new Error('bare pipeline: B deciphered other bytes than A sealed');
  console.log(`| bare pipeline: client → A → B, primitives only | ${bare.mibs.toFixed(0)} MiB/s | ${bare.cpu} |`);
  console.log(`| bare pipeline / raw | ${(bare.mibs / raw).toFixed(2)} |`);
}

try {
  await main();
} finally {
  rmSync(root, { recursive: true, force: true });
}
