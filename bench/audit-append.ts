/**
 * Audit append throughput, in one run, batch sizes 1 and 100:
 *   audit   appendAudit() in its own transaction (canonical JSON, leaf hash,
 *           audit_head row lock, trigger-protected table) while a checkpointer
 *           signs a checkpoint with the HSM audit key every second
 *           (tiles + tree head + consistency proof + ECDSA)
 *   raw     INSERT of the same rows (same columns, same unnest) into a plain
 *           table with no head lock, no hashing and no checkpoints
 * then, cold (a fresh TreeReader), the cost of a tree head and of inclusion and consistency proofs; with a
 * second argument N, after adding N synthetic leaves in SQL (e.g. 1000000) to see proof cost at scale.
 * Run: npm run bench:audit [-- seconds [N]]   (embedded PostgreSQL + dev SoftHSM token in a temp dir)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApp } from '../plugins/app.ts';
import { appendAudit, type AuditInput } from '../src/audit/append.ts';
import { issueCheckpoint } from '../src/audit/checkpoint.ts';
import { canonicalJson } from '../src/audit/canonical.ts';
import { loadConfig } from '../src/config.ts';
import { inTransaction } from '../src/db/pool.ts';
import { TreeReader } from '../src/audit/tree.ts';
import { freePort } from '../test/helpers/ports.ts';

const SECONDS = Number(process.argv[2] ?? 3);
const SYNTHETIC = Number(process.argv[3] ?? 0);
const CONCURRENCY = 4;
delete process.env.SOFTHSM2_CONF;

const dataDir = mkdtempSync(join(tmpdir(), 'gw-bench-audit-'));
const config = loadConfig({
  DATA_DIR: dataDir,
  PORT: String(await freePort()),
  EMBEDDED_PG_PORT: String(await freePort()),
  LOG_LEVEL: 'silent',
  HSM_SESSIONS: '2',
});
const app = await buildApp(config, { logger: false });
const ctx = app.ctx;

const event = (i: number): AuditInput => ({
  type: 'delivery.attempt',
  outcome: 'success',
  agent: { type: 'partner', id: `org-${i % 50}` },
  entity: [{ type: 'delivery', id: `dl-${i}`, digest: `sha256:${'0f'.repeat(32)}` }],
  detail: { attempt: 1, status: 202 },
});

async function rate(name: string, batch: number, one: (events: AuditInput[]) => Promise<unknown>): Promise<number> {
  const until = performance.now() + SECONDS * 1000;
  let n = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < until) {
        await one(Array.from({ length: batch }, (_, j) => event(n + j)));
        n += batch;
      }
    }),
  );
  const perSec = n / ((performance.now() - start) / 1000);
  console.log(
    `${name.padEnd(22)} ${perSec.toFixed(0).padStart(7)} entries/s  (${n} in ${((performance.now() - start) / 1000).toFixed(1)} s, ${CONCURRENCY} writers)`,
  );
  return perSec;
}

try {
  await ctx.pool.query(
    `CREATE TABLE bench_raw (idx bigint PRIMARY KEY, recorded_at timestamptz NOT NULL, type text NOT NULL, outcome text NOT NULL, entry text NOT NULL, leaf_hash bytea NOT NULL)`,
  );
  await ctx.pool.query('CREATE SEQUENCE bench_raw_idx');
  const raw = (events: AuditInput[]) => {
    const now = new Date();
    return ctx.pool.query(
      `INSERT INTO bench_raw (idx, recorded_at, type, outcome, entry, leaf_hash)
       SELECT nextval('bench_raw_idx'), $1, t, o, e, '\\x00'::bytea FROM unnest($2::text[], $3::text[], $4::text[]) AS u(t, o, e)`,
      [
        now,
        events.map((e) => e.type),
        events.map((e) => e.outcome),
        events.map((e) => canonicalJson({ ...e, recorded: now.toISOString() })),
      ],
    );
  };
  const audited = (events: AuditInput[]) => inTransaction(ctx.pool, (c) => appendAudit(c, events));

  // Checkpointing on, far more often than the production cron (every 60 s).
  let checkpoints = 0;
  let cpMs = 0;
  let running = true;
  const checkpointer = (async () => {
    while (running) {
      const t = performance.now();
      if (await issueCheckpoint(ctx)) checkpoints++;
      cpMs += performance.now() - t;
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();

  const results: Record<string, number> = {};
  for (const batch of [1, 100]) {
    results[`raw-${batch}`] = await rate(`raw INSERT, batch ${batch}`, batch, raw);
    results[`audit-${batch}`] = await rate(`appendAudit, batch ${batch}`, batch, audited);
  }
  running = false;
  await checkpointer;
  let size = Number((await ctx.pool.query('SELECT size FROM audit_head')).rows[0].size);
  console.log(
    `checkpoints signed: ${checkpoints} (mean ${(cpMs / Math.max(1, checkpoints)).toFixed(0)} ms each, log size ${size})`,
  );
  if (SYNTHETIC > 0) {
    await inTransaction(ctx.pool, async (c) => {
      await c.query(
        `INSERT INTO audit_log (idx, recorded_at, type, outcome, entry, leaf_hash)
         SELECT i, now(), 'bench.synthetic', 'success', e, sha256('\\x00'::bytea || convert_to(e, 'UTF8'))
         FROM (SELECT size + g AS i, format('{"index":%s,"outcome":"success","type":"bench.synthetic"}', size + g) AS e
               FROM audit_head, generate_series(0, $1::bigint - 1) AS g) AS s`,
        [SYNTHETIC],
      );
      await c.query('UPDATE audit_head SET size = size + $1', [SYNTHETIC]);
    });
    size += SYNTHETIC;
    const t = performance.now();
    await issueCheckpoint(ctx);
    console.log(
      `added ${SYNTHETIC} synthetic leaves; first checkpoint over them (tiles + head + proof + sign): ${(performance.now() - t).toFixed(0)} ms`,
    );
  }
  // Proof cost at this size, cold (a new reader: tiles and blocks read from PostgreSQL).
  await issueCheckpoint(ctx);
  for (const [what, fn] of [
    ['tree head', (t: TreeReader) => t.root()],
    ['inclusion proof', (t: TreeReader) => t.inclusionProof(Math.floor(size / 3))],
    ['consistency proof', (t: TreeReader) => t.consistencyProof(Math.floor(size / 2) + 7)],
  ] as const) {
    const t = performance.now();
    await fn(new TreeReader(ctx.pool, size));
    console.log(`${what} at size ${size}, cold: ${(performance.now() - t).toFixed(1)} ms`);
  }
  for (const b of [1, 100])
    console.log(`batch ${b}: appendAudit / raw INSERT = ${(results[`audit-${b}`]! / results[`raw-${b}`]!).toFixed(2)}`);
} finally {
  await app.close();
  rmSync(dataDir, { recursive: true, force: true });
}
