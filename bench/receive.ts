/**
 * Inbound receive throughput, in one run:
 *   gateway-http  POST /inbox over HTTP: open (HSM ECDH + Concat KDF, AES-GCM) + verify (ES256, directory)
 *                 + dedupe + store sealed + audit + HSM-signed receipt; the client (node:http, keep-alive)
 *                 runs in a worker thread (bench/receive-client.ts) and its CPU is given apart
 *   gateway       the same pipeline called in-process (no HTTP)
 *   no-store      open + verify + sign the receipt, without the database write (where the rest goes)
 *   raw           the bare primitives per message: HSM derive (pkcs11js through the Hsm facade),
 *                 AES-256-GCM decrypt, ES256 verify (node:crypto), HSM sign of the receipt digest
 *   http-v2       gateway-http for protocol v2: from a sender with post-quantum keys (an independent
 *                 peer, test/helpers/pq-peer.ts), hybrid envelopes and dual-signed content, dual receipts;
 *                 v2 / v1 is the median of the rounds' http-v2 / gateway-http ratios
 * The four alternate in ROUNDS rounds of SECONDS seconds each (the order reversed every other round), so
 * a change in the machine's load falls on all alike; each ratio is the median of the rounds' ratios. Each
 * with CONCURRENCY callers, 10 KiB bundles, every envelope a new delivery; per phase also the CPU per
 * message of the main thread, the other threads (libuv pool: the HSM calls) and PostgreSQL.
 * Run: npm run bench:receive [-- seconds [rounds [callers]]]   (embedded PostgreSQL + dev SoftHSM token in a temp dir)
 * BENCH_PG_STATEMENTS=1 loads pg_stat_statements into the embedded PostgreSQL (with track_planning) and
 * prints, for the rounds (not the warm-up), the statements by total time: calls per stored message and the
 * mean execution and planning time of each. It costs the server some CPU: not for the figures above it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDecipheriv, createHash, createPublicKey, verify } from 'node:crypto';
import { buildApp } from '../plugins/app.ts';
import { loadConfig } from '../src/config.ts';
import { inboxReceiver } from '../src/inbound/receive.ts';
import { gatewayDecryptionKeys } from '../src/inbound/decryption-keys.ts';
import { verifySignedContent } from '../src/protocol/signed-content.ts';
import { openCompactJwe } from '../src/jose/open.ts';
import { signReceipt } from '../src/protocol/receipt.ts';
import { checkHeader, concatKdfOtherInfo, parseCompactJwe } from '../src/jose/jwe-header.ts';
import { cpuBetween, cpuElsewhere, threadCpuSeconds } from './proc-stats.ts';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';
import { claimsFor, seal, signContent, softPartner } from '../test/helpers/envelopes.ts';
import { createPqPeer } from '../test/helpers/pq-peer.ts';
import { freePort } from '../test/helpers/ports.ts';
import { applyHeapSettings, relaunchWithStartFlags } from '../src/runtime/v8-heap.ts';

// The gateway runs in this process: with the heap settings bin/gateway.js gives it.
relaunchWithStartFlags();
applyHeapSettings();

const SECONDS = Number(process.argv[2] ?? 1);
const ROUNDS = Number(process.argv[3] ?? 7);
const ENVELOPES = 12_000; // about 19 KB each; a phase ends early if it uses its round's share up
const V2_ENVELOPES = 3_000;
const CONCURRENCY = Number(process.argv[4] ?? 8);
delete process.env.SOFTHSM2_CONF; // the dev token below must use its own directory

const dataDir = mkdtempSync(join(tmpdir(), 'gw-bench-receive-'));
const port = await freePort();
const config = loadConfig({
  DATA_DIR: dataDir,
  PORT: String(port),
  EMBEDDED_PG_PORT: String(await freePort()),
  LOG_LEVEL: 'silent',
  HSM_SESSIONS: '4',
});
const PG_STATEMENTS = process.env.BENCH_PG_STATEMENTS === '1';
if (PG_STATEMENTS) {
  // shared_preload_libraries is read when the server starts: set on a first start, the gateway's start loads it.
  const db = await startEmbeddedPostgres(config.dataDir, {
    port: config.embeddedPgPort,
    profile: config.embeddedPgProfile,
  });
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  await admin.query(`ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`);
  await admin.query(`ALTER SYSTEM SET pg_stat_statements.track_planning = on`);
  await admin.end();
  await db.stop();
}
const app = await buildApp(config, { logger: false });
await app.listen({ port, host: '127.0.0.1' });
const ctx = app.ctx;

let client: Worker | undefined;
try {
  const partner = await softPartner('https://bench-sender.test');
  await ctx.directory.add({ id: partner.id, endpoint: 'https://bench-sender.test/inbox', jwks: partner.jwks });
  const enc = ctx.keyring.jwks().keys.find((k) => k.use === 'enc')!;
  const bundle = {
    resourceType: 'Bundle',
    type: 'collection',
    entry: [{ resource: { resourceType: 'Basic', id: 'pad', text: 'x'.repeat(10_240 - 120) } }],
  };

  // Envelopes are made before the clock starts: sealing is the sender's cost, not ours.
  const envelopes: string[] = [];
  for (let i = 0; i < ENVELOPES; i++)
    envelopes.push(seal(enc as never, await signContent(partner, claimsFor(partner, config.org, bundle))));
  console.log(`prepared ${envelopes.length} envelopes of ${envelopes[0]!.length} bytes`);
  // Protocol v2: a sender publishing ML-KEM and ML-DSA keys, sealing to both of ours.
  const pq = createPqPeer();
  const pqSender = 'https://bench-pq-sender.test';
  await ctx.directory.add({
    id: pqSender,
    endpoint: `${pqSender}/inbox`,
    jwks: { keys: [pq.jwks.ecEnc, pq.jwks.ecSig, pq.jwks.kemEnc, pq.jwks.pqSig] },
  });
  const ours = ctx.keyring.jwks().keys as Array<{ kty: string; use?: string; alg?: string; kid: string }>;
  const ourEc = ours.find((k) => k.kty === 'EC' && k.use === 'enc') as never;
  const ourKem = ours.find((k) => k.alg === 'ML-KEM-768') as never;
  const envelopesV2: string[] = [];
  for (let i = 0; i < V2_ENVELOPES; i++)
    envelopesV2.push(
      pq.seal(pq.signDual(JSON.stringify(claimsFor({ id: pqSender }, config.org, bundle)), 'exchange+jwt'), {
        ec: ourEc,
        kem: ourKem,
      }),
    );
  console.log(`prepared ${envelopesV2.length} v2 envelopes of ${envelopesV2[0]!.length} bytes`);
  let next = 0;
  let limit = 0;
  /** The next unused envelope of this phase's share, or undefined when the share is used up. */
  const take = () => (next < limit ? envelopes[next++]! : undefined);
  let nextV2 = 0;

  /** A phase whose callers run elsewhere: given its envelopes, then timed. */
  interface Remote {
    load: (envelopes: string[]) => Promise<void>;
    run: (seconds: number) => Promise<{ n: number; ms: number; cpuMs: number }>;
  }
  interface Phase {
    name: string;
    one: (() => Promise<boolean>) | Remote;
    /** Envelopes per round (raw reuses one). */
    share: number;
    /** Sends the v2 envelopes. */
    v2?: boolean;
    rates: number[];
    n: number;
    cpu: { main: number; other: number; pg: number; client: number };
  }

  /** One phase for `seconds`: messages per second, and the CPU it cost added to the phase's totals. */
  async function rate(p: Phase, seconds = SECONDS): Promise<number> {
    const one = p.one;
    if (p.v2) {
      const end = Math.min(envelopesV2.length, nextV2 + p.share);
      await (one as Remote).load(envelopesV2.slice(nextV2, end));
      nextV2 = end;
    } else {
      limit = Math.min(envelopes.length, next + p.share);
      if (typeof one !== 'function') {
        await one.load(envelopes.slice(next, limit));
        next = limit;
      }
    }
    const before = cpuElsewhere();
    const main0 = threadCpuSeconds(process.pid);
    let n = 0;
    let elapsed: number;
    let clientCpu = 0;
    if (typeof one === 'function') {
      const until = performance.now() + seconds * 1000;
      const start = performance.now();
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (performance.now() < until && (await one())) n++;
        }),
      );
      elapsed = performance.now() - start;
    } else {
      const r = await one.run(seconds);
      [n, elapsed, clientCpu] = [r.n, r.ms, r.cpuMs / 1000];
    }
    const perSec = n / (elapsed / 1000);
    const e = cpuBetween(before, cpuElsewhere());
    p.n += n;
    p.cpu.main += threadCpuSeconds(process.pid) - main0;
    p.cpu.other += e.otherThreads - clientCpu;
    p.cpu.client += clientCpu;
    p.cpu.pg += e.children;
    p.rates.push(perSec);
    return perSec;
  }

  // Raw primitives on one fixed envelope (what open + verify + receipt cannot do without).
  const sample = envelopes[envelopes.length - 1]!;
  const jwe = parseCompactJwe(sample);
  const h = checkHeader(jwe);
  const encRow = ctx.keyring.active('enc');
  const otherInfo = concatKdfOtherInfo('A256GCM', h.apu, h.apv, 256);
  const cek0 = await ctx.hsm.deriveConcatKdf(encRow.hsm_id, h.epkPoint, 32, otherInfo, 32, config.hsmKdf);
  const d0 = createDecipheriv('aes-256-gcm', cek0, jwe.iv).setAAD(Buffer.from(jwe.protectedB64)).setAuthTag(jwe.tag);
  const jws = Buffer.concat([d0.update(jwe.ciphertext), d0.final()]).toString();
  const [jh, jp, js] = jws.split('.') as [string, string, string];
  const senderKey = createPublicKey({ key: partner.jwks.keys[0] as never, format: 'jwk' });
  const sigRow = ctx.keyring.active('sig');
  const raw = async () => {
    const cek = await ctx.hsm.deriveConcatKdf(encRow.hsm_id, h.epkPoint, 32, otherInfo, 32, config.hsmKdf);
    const d = createDecipheriv('aes-256-gcm', cek, jwe.iv)
      .setAAD(Buffer.from(jwe.protectedB64, 'ascii'))
      .setAuthTag(jwe.tag);
    Buffer.concat([d.update(jwe.ciphertext), d.final()]);
    if (
      !verify(
        'sha256',
        Buffer.from(`${jh}.${jp}`),
        { key: senderKey, dsaEncoding: 'ieee-p1363' },
        Buffer.from(js, 'base64url'),
      )
    )
      throw new Error('verify');
    await ctx.hsm.signDigest(sigRow.hsm_id, 'ES256', createHash('sha256').update('receipt').digest());
    return true;
  };

  // The pipeline without the database write: what the crypto and the directory lookups cost.
  const resolveKey = gatewayDecryptionKeys(ctx.keyring);
  const noStore = async () => {
    const envelope = take();
    if (!envelope) return false;
    const opened = await openCompactJwe(envelope, { hsm: ctx.hsm, kdf: config.hsmKdf, resolveKey });
    const v = await verifySignedContent(opened.plaintext.toString(), {
      directory: ctx.directory,
      org: config.org,
      clockSkewMs: config.clockSkew,
      maxAgeMs: config.inboxMaxAge,
    });
    await signReceipt(ctx.keyring.signer(), { iss: config.org, aud: v.claims.iss, delivery: v.claims.jti, envelope });
    return true;
  };

  const receive = inboxReceiver(ctx);
  const pipeline = async () => {
    const envelope = take();
    if (!envelope) return false;
    if ((await receive(envelope)).duplicate) throw new Error('unexpected duplicate');
    return true;
  };
  // POST /inbox from a worker thread (bench/receive-client.ts): the client's CPU is not the gateway's main thread's.
  const worker = new Worker(new URL('./receive-client.ts', import.meta.url), {
    workerData: { url: `${config.baseUrl}/inbox`, callers: CONCURRENCY },
  });
  client = worker;
  const ask = <T>(message: unknown) =>
    new Promise<T>((resolve, reject) => {
      const fail = (err: unknown) => reject(err);
      worker.once('message', (answer: T) => {
        worker.off('error', fail);
        resolve(answer);
      });
      worker.once('error', fail);
      worker.postMessage(message);
    });
  const http: Remote = {
    load: async (batch) => void (await ask({ load: batch })),
    run: (seconds) => ask({ seconds }),
  };

  const phase = (name: string, one: Phase['one'], share: number, v2 = false): Phase => ({
    name,
    one,
    share,
    v2,
    rates: [],
    n: 0,
    cpu: { main: 0, other: 0, pg: 0, client: 0 },
  });
  const share = Math.floor((ENVELOPES - 500) / (3 * ROUNDS));
  const rawPhase = phase('raw', raw, 0);
  const phases = [
    rawPhase,
    phase('no-store', noStore, share),
    phase('gateway', pipeline, share),
    phase('gateway-http', http, share),
    phase('http-v2', http, Math.floor(V2_ENVELOPES / ROUNDS) - 1, true),
  ];
  await rate(phase('warm-up', pipeline, 500), 1);
  const storedCount = async () =>
    Number((await ctx.pool.query('SELECT count(*)::int AS n FROM inbox_messages')).rows[0].n);
  let storedBefore = 0;
  if (PG_STATEMENTS) {
    await ctx.pool.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await ctx.pool.query('SELECT pg_stat_statements_reset()');
    storedBefore = await storedCount();
  }
  for (let round = 0; round < ROUNDS; round++)
    for (const p of round % 2 === 0 ? phases : [...phases].reverse()) await rate(p);

  const median = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)]!;
  const ms = (s: number, n: number) => ((1000 * s) / n).toFixed(2);
  console.log(
    `${ROUNDS} rounds of ${SECONDS} s per phase, ${CONCURRENCY} callers; median of the rounds and CPU per message`,
  );
  for (const p of phases)
    console.log(
      `${p.name.padEnd(14)} ${median(p.rates).toFixed(0).padStart(6)} /s  (${Math.min(...p.rates).toFixed(0)}–${Math.max(...p.rates).toFixed(0)}; ${p.n} msgs)  CPU ms/msg: main ${ms(p.cpu.main, p.n)}, other threads ${ms(p.cpu.other, p.n)}, PostgreSQL ${ms(p.cpu.pg, p.n)}${p.cpu.client ? `, client ${ms(p.cpu.client, p.n)}` : ''}`,
    );
  const ratio = (p: Phase) => {
    const r = p.rates.map((x, i) => x / rawPhase.rates[i]!);
    return `${median(r).toFixed(2)} (${Math.min(...r).toFixed(2)}–${Math.max(...r).toFixed(2)})`;
  };
  const stored = await storedCount();
  console.log(
    `\ngateway-http/raw ${ratio(phases[3]!)}, gateway/raw ${ratio(phases[2]!)}, no-store/raw ${ratio(phases[1]!)}  (median of the rounds' ratios); ${stored} messages stored`,
  );
  const v2Ratios = phases[4]!.rates.map((x, i) => x / phases[3]!.rates[i]!);
  const v2Stored = Number(
    (await ctx.pool.query('SELECT count(*)::int AS n FROM inbox_messages WHERE sender = $1', [pqSender])).rows[0].n,
  );
  if (v2Stored !== phases[4]!.n) throw new Error(`${phases[4]!.n} v2 messages answered but ${v2Stored} stored`);
  console.log(
    `v2/v1 over HTTP ${median(v2Ratios).toFixed(2)} (${Math.min(...v2Ratios).toFixed(2)}–${Math.max(...v2Ratios).toFixed(2)}); ${v2Stored} v2 messages stored`,
  );
  if (PG_STATEMENTS) {
    const inRounds = stored - storedBefore;
    const { rows } = await ctx.pool.query<{
      query: string;
      calls: string;
      rows: string;
      total: number;
      exec: number;
      plans: string;
      plan: number;
    }>(
      `SELECT query, calls, rows, total_exec_time + total_plan_time AS total, mean_exec_time AS exec, plans, mean_plan_time AS plan
         FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        ORDER BY total DESC LIMIT 12`,
    );
    console.log(`\npg_stat_statements over the rounds, ${inRounds} messages stored; by total time:`);
    for (const r of rows)
      console.log(
        `${(Number(r.calls) / inRounds).toFixed(3).padStart(7)} calls/msg  ${r.exec.toFixed(3).padStart(7)} ms exec  ${Number(r.plans) ? `${r.plan.toFixed(3)} ms plan (${r.plans} plans)` : 'no plans'}  ${((1000 * r.total) / inRounds).toFixed(1)} µs/msg  ${(Number(r.rows) / Math.max(1, Number(r.calls))).toFixed(1)} rows/call  ${r.query.replace(/\s+/g, ' ').slice(0, 90)}`,
      );
  }
  console.log(
    `machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, node ${process.version}, HSM_KDF=${config.hsmKdf}`,
  );
} finally {
  await client?.terminate();
  await app.close();
  rmSync(dataDir, { recursive: true, force: true });
}
