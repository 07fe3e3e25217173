/**
 * Outbound intake throughput, in one run:
 *   gateway  POST /fhir/$process-message over HTTP with autocannon: a 10 KiB message Bundle to 2
 *            partners (validate, 2 HSM signs, 2 seals, group-committed rows + jobs + audit)
 *   raw      the lean ceiling looped without HTTP: per bundle the 2 HSM signs and 2 node:crypto seals,
 *            and the same rows, jobs and audit entries written in batches of 100; gateway and raw
 *            alternate in rounds of 4 s and the ratio is the median of the rounds' ratios
 *   half     the gateway at half its peak rate, open loop, for the latency check
 *   stages   per bundle, in interleaved rounds: parse, R4 validation (and the former two-walk
 *            validator, test/helpers/r4-reference.ts), the 2 signs, the 2 seals and the commit; the
 *            validation's cost as a share of the raw ceiling's stages, robust to the machine's load
 *   v2       protocol v2 against v1 over HTTP, alternating rounds: the same bundle to 2 partners that
 *            publish post-quantum keys (ML-KEM hybrid seal, ES256 + ML-DSA-65 signatures) and to 2 that
 *            do not; v2 / v1 is the median of the rounds' ratios
 *   drain    the worker draining the queued deliver jobs with a no-op task: graphile-worker defaults
 *            against localQueue + batched completion
 * Each throughput phase also reports CPU per bundle: the gateway's main thread, its other threads still
 * running at the end (the libuv pool with the HSM calls, V8's helpers; not the load generator's worker,
 * ended by then) and PostgreSQL.
 * Run: npm run bench:intake [-- seconds]   (embedded PostgreSQL + dev SoftHSM token in a temp dir)
 * EMBEDDED_PG_PROFILE=small|throughput picks the embedded PostgreSQL's write profile (default: small, as a first start).
 * Knobs: BENCH_HALF_RUNS=N repeats the half-rate phase; BENCH_PEAK=R skips the peak phase and paces at R/2;
 * BENCH_HALF_ONLY=1 stops after the half-rate phase(s); BENCH_STAGES_ONLY=1 runs the stages alone (then the
 * seconds are rounds); BENCH_SLOW=1 prints when clusters of requests slower
 * than 50 ms began (to line up with PostgreSQL's log: a cluster every ~2 s was WAL segment creation).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, generateKeyPairSync, randomUUID } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import { run } from 'graphile-worker';
import { buildApp } from '../plugins/app.ts';
import { loadConfig } from '../src/config.ts';
import { registerClient } from '../src/auth/clients.ts';
import { ASSERTION_TYPE, TOKEN_PATH } from '../src/auth/token-endpoint.ts';
import { inTransaction } from '../src/db/pool.ts';
import { silentLogger } from '../src/db/migrate.ts';
import { writeIntakes, type IntakeRecord } from '../src/outbound/intake-store.ts';
import { DELIVER_TASK, enqueueJobs } from '../src/queue/jobs.ts';
import { claimsPayload, envelopeDigest } from '../src/protocol/wire.ts';
import { signCompact } from '../src/jose/jws.ts';
import { sealCompact } from '../src/jose/seal.ts';
import { akpThumbprint } from '../src/jose/thumbprint.ts';
import { unpackCompactJwe } from '../src/jose/packed-jwe.ts';
import { envelopeVersion } from '../src/protocol/v2-negotiation.ts';
import { decodeJsonBody, parseFhirJson } from '../src/fhir/json.ts';
import { checkBundle } from '../src/fhir/bundle.ts';
import { r4Issues } from '../src/fhir/r4-validate.ts';
import { referenceR4Issues } from '../test/helpers/r4-reference.ts';
import { freePort } from '../test/helpers/ports.ts';
import { cpuBetween, cpuElsewhere, threadCpuSeconds } from './proc-stats.ts';
import { applyHeapSettings, relaunchWithStartFlags } from '../src/runtime/v8-heap.ts';

// The gateway runs in this process: with the heap settings bin/gateway.js gives it.
relaunchWithStartFlags();
applyHeapSettings();

const SECONDS = Number(process.argv[2] ?? 10);
const CONNECTIONS = 32;
const WARMUP = 3; // seconds of paced load before latencies are recorded
delete process.env.SOFTHSM2_CONF; // the dev token below must use its own directory

const dataDir = mkdtempSync(join(tmpdir(), 'gw-bench-intake-'));
/** Stop the gateway (and its embedded PostgreSQL) and remove the run's data: WAL and envelopes. */
async function finish(): Promise<never> {
  await app.close();
  rmSync(dataDir, { recursive: true, force: true });
  process.exit(0);
}
const port = await freePort();
const config = loadConfig({
  DATA_DIR: dataDir,
  PORT: String(port),
  EMBEDDED_PG_PROFILE: process.env.EMBEDDED_PG_PROFILE ?? 'small',
  LOG_LEVEL: 'silent',
  HSM_SESSIONS: '4',
  RATE_LIMIT: '0',
  PROTOCOL_V2: 'on',
});
const app = await buildApp(config, { logger: false });
await app.listen({ port, host: '127.0.0.1' });
const ctx = app.ctx;
const url = `http://127.0.0.1:${port}`;

/** A partner with an inline JWKS; with `pq`, also its ML-KEM-768 and ML-DSA-65 keys (protocol v2). */
async function partner(id: string, pq = false) {
  const enc = await exportJWK((await generateKeyPair('ECDH-ES', { extractable: true })).publicKey);
  const sig = await exportJWK((await generateKeyPair('ES256', { extractable: true })).publicKey);
  const akp = (alg: 'ML-KEM-768' | 'ML-DSA-65', use: string) => {
    const { publicKey } = alg === 'ML-KEM-768' ? generateKeyPairSync('ml-kem-768') : generateKeyPairSync('ml-dsa-65');
    const { pub } = publicKey.export({ format: 'jwk' }) as { pub: string };
    return { kty: 'AKP', alg, pub, use, kid: akpThumbprint({ alg, pub }) };
  };
  const jwks = {
    keys: [
      { ...enc, kid: await calculateJwkThumbprint(enc), use: 'enc', alg: 'ECDH-ES' },
      { ...sig, kid: await calculateJwkThumbprint(sig), use: 'sig', alg: 'ES256' },
      ...(pq ? [akp('ML-KEM-768', 'enc'), akp('ML-DSA-65', 'sig')] : []),
    ],
  };
  await ctx.directory.add({ id, endpoint: `https://${id}/inbox`, jwks });
  return { id, enc: jwks.keys[0]! };
}

function bundle10k(ids: string[]): string {
  const b = {
    resourceType: 'Bundle',
    type: 'message',
    entry: [
      {
        fullUrl: 'urn:uuid:0c3a3e3a-1f1e-4c8e-9b1a-3c5d7e9f1a2b',
        resource: {
          resourceType: 'MessageHeader',
          eventCoding: { code: 'referral' },
          source: { endpoint: 'urn:bench' },
          destination: ids.map((id) => ({ endpoint: `https://${id}/inbox`, receiver: { identifier: { value: id } } })),
        },
      },
      {
        fullUrl: 'urn:uuid:5d1c1a1e-2b3c-4d5e-8f90-a1b2c3d4e5f6',
        resource: { resourceType: 'Basic', code: { text: 'pad' }, extension: [{ url: 'urn:pad', valueString: '' }] },
      },
    ],
  };
  const base = JSON.stringify(b).length;
  (b.entry[1]!.resource as { extension: Array<{ valueString: string }> }).extension[0]!.valueString = 'x'.repeat(
    10_240 - base,
  );
  return JSON.stringify(b);
}

async function bearer(): Promise<string> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'bench', alg: 'ES256', use: 'sig' };
  await registerClient(ctx.pool, {
    id: 'bench-ehr',
    name: 'bench',
    jwks: { keys: [jwk] },
    scopes: ['system/Bundle.write'],
    rateLimit: 0,
  });
  const assertion = await new SignJWT({
    iss: 'bench-ehr',
    sub: 'bench-ehr',
    aud: url + TOKEN_PATH,
    jti: randomUUID(),
    exp: Math.floor(Date.now() / 1000) + 240,
  })
    .setProtectedHeader({ alg: 'ES256', kid: 'bench', typ: 'JWT' })
    .sign(privateKey);
  const res = await fetch(url + TOKEN_PATH, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: assertion,
      scope: 'system/Bundle.write',
    }),
  });
  if (!res.ok) throw new Error(`token: ${res.status} ${await res.text()}`);
  return `Bearer ${((await res.json()) as { access_token: string }).access_token}`;
}

function cannon(body: string, auth: string, seconds: number, overallRate?: number, connections = CONNECTIONS) {
  return autocannon({
    url: `${url}/fhir/$process-message`,
    method: 'POST',
    connections,
    duration: seconds,
    workers: 1,
    ...(overallRate ? { overallRate } : {}),
    headers: { 'content-type': 'application/fhir+json', authorization: auth },
    body,
  });
}

/** CPU used from now until the call, per bundle, in ms: this main thread, the other threads, PostgreSQL. */
function cpuMeter() {
  const main0 = threadCpuSeconds(process.pid);
  const before = cpuElsewhere();
  return (bundles: number) => {
    const main = threadCpuSeconds(process.pid) - main0;
    const e = cpuBetween(before, cpuElsewhere());
    const per = (sec: number) => ((1000 * sec) / bundles).toFixed(2);
    return `CPU per bundle: main thread ${per(main)} ms, other threads ${per(e.otherThreads)} ms, PostgreSQL ${per(e.children)} ms`;
  };
}

/**
 * Open-loop load at a fixed rate, evenly spaced, in a worker thread; latency is measured from each
 * request's scheduled time (no coordinated omission). autocannon's rate limit sends each second's
 * budget in a burst, which measures queueing behind the burst rather than latency at that rate.
 * The first WARMUP seconds are sent at the same rate but not recorded: while the generator's
 * connection pool grows, its first requests each open a connection, a start-up burst that is
 * the load generator's, not the gateway's steady state (wrk2 and autocannon warm up the same way).
 */
function paced(
  body: string,
  auth: string,
  seconds: number,
  rate: number,
): Promise<{ rate: number; p50: number; p90: number; p99: number; errors: number }> {
  const code = `
    const { parentPort, workerData: w } = require('node:worker_threads');
    // node:http with keep-alive: a lean client (fetch costs several times more CPU per request,
    // and on 2 cores the generator's CPU is taken from the gateway it measures).
    const http = require('node:http');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
    const lat = []; let errors = 0; let done = 0;
    const skip = Math.floor(w.rate * w.warmup); const total = skip + Math.floor(w.rate * w.seconds);
    const gap = 1000 / w.rate; const start = performance.now(); const measuredFrom = start + skip * gap;
    for (let i = 0; i < total; i++) {
      const at = start + i * gap;
      setTimeout(() => {
        const req = http.request(w.url, { method: 'POST', agent, headers: { 'content-type': 'application/fhir+json', authorization: w.auth, 'content-length': Buffer.byteLength(w.body) } }, (res) => {
          res.resume();
          res.on('end', () => finish(res.statusCode === 202));
        });
        req.on('error', () => finish(false));
        req.end(w.body);
        function finish(ok) {
          if (!ok) errors++;
          if (i >= skip) { const l = performance.now() - at; lat.push(l); if (l > 50) (globalThis.slow ??= []).push([Date.now() - l, l]); }
          if (++done === total) parentPort.postMessage({ lat, errors, secs: (performance.now() - measuredFrom) / 1000, slow: globalThis.slow ?? [] });
        }
      }, Math.max(0, at - performance.now()));
    }`;
  return new Promise((resolve, reject) => {
    const worker = new Worker(code, {
      eval: true,
      workerData: { url: `${url}/fhir/$process-message`, auth, body, rate, seconds, warmup: WARMUP },
    });
    worker.once('error', reject);
    worker.once('message', (m: { lat: number[]; errors: number; secs: number; slow: Array<[number, number]> }) => {
      if (process.env.BENCH_SLOW) {
        let last = 0;
        for (const [t, l] of m.slow) {
          if (t - last > 500) console.log(`slow from ${new Date(t).toISOString()} lat ${l.toFixed(0)}`);
          last = t;
        }
        console.log(`slow total ${m.slow.length}`);
      }
      void worker.terminate();
      const lat = m.lat.sort((x, y) => x - y);
      const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
      resolve({ rate: lat.length / m.secs, p50: q(0.5), p90: q(0.9), p99: q(0.99), errors: m.errors });
    });
  });
}

const a = await partner('bench-a.test');
const b = await partner('bench-b.test');
const body = bundle10k([a.id, b.id]);
const auth = await bearer();
console.log(
  `bundle ${Buffer.byteLength(body)} bytes, 2 recipients, ${SECONDS} s per phase, ${CONNECTIONS} connections`,
);

if (!process.env.BENCH_STAGES_ONLY) {
  await cannon(body, auth, 2); // warm-up
  const single = await cannon(body, auth, 3, undefined, 1);
  console.log(
    `single   ${single.requests.average.toFixed(0).padStart(6)} bundles/s  p50 ${single.latency.p50} ms  p99 ${single.latency.p99} ms  (1 connection)`,
  );
}
// Raw ceiling: the same crypto and the same writes, no HTTP, no validation, batches of 100.
const signer = ctx.keyring.signer('sig');
const digest = 'sha-256=' + createHash('sha256').update(body).digest('base64url');
async function record(): Promise<IntakeRecord> {
  const exchangeId = randomUUID();
  const deliveries = await Promise.all(
    [a, b].map(async (p) => {
      const id = randomUUID();
      const jws = await signCompact(
        signer,
        claimsPayload(
          { iss: config.org, aud: p.id, iat: 0, jti: id, exchange: exchangeId, content_type: 'application/fhir+json' },
          body,
        ),
        { typ: 'exchange+jwt' },
      );
      const envelope = sealCompact(jws, p.enc as never);
      return {
        id,
        partnerId: p.id,
        kid: p.enc.kid,
        envelope,
        envelopeDigest: envelopeDigest(envelope),
        protocol: 1 as const,
      };
    }),
  );
  const audit = [
    {
      type: 'intake.accepted' as const,
      outcome: 'success' as const,
      entity: [{ type: 'exchange', id: exchangeId, digest }],
    },
    ...deliveries.flatMap((d) => [
      { type: 'exchange.signed' as const, outcome: 'success' as const, entity: [{ type: 'delivery', id: d.id }] },
      {
        type: 'exchange.sealed' as const,
        outcome: 'success' as const,
        entity: [{ type: 'delivery', id: d.id, digest: d.envelopeDigest }],
      },
    ]),
  ];
  return {
    exchange: {
      id: exchangeId,
      clientId: 'raw',
      bundleType: 'message',
      contentDigest: digest,
      contentLength: body.length,
      purposeOfUse: ['TREAT'],
      idempotencyKey: null,
    },
    deliveries,
    audit,
  };
}
// Gateway peak and raw ceiling in alternating rounds (gateway first in odd rounds, raw first in even
// ones), so that a change in the machine's load falls on both alike; the ratio is the median of the
// rounds' ratios. BENCH_PEAK=N skips them and paces at N/2 (to repeat the latency check alone);
// BENCH_HALF_RUNS repeats the half-rate phase.
const fixedPeak = Number(process.env.BENCH_PEAK ?? 0);
let gwRate = fixedPeak;
const ROUND_SECONDS = 4;
const rounds = Math.max(3, Math.round(SECONDS / ROUND_SECONDS));
async function gatewayRound(): Promise<{ rate: number; total: number; p50: number; p99: number }> {
  const peak = await cannon(body, auth, ROUND_SECONDS);
  if (peak.non2xx) throw new Error(`${peak.non2xx} non-2xx answers`);
  return { rate: peak.requests.average, total: peak.requests.total, p50: peak.latency.p50, p99: peak.latency.p99 };
}
async function rawRound(): Promise<{ rate: number; total: number }> {
  let total = 0;
  const start = performance.now();
  while (performance.now() - start < ROUND_SECONDS * 1000) {
    const batch = await Promise.all(Array.from({ length: 100 }, record));
    await writeIntakes(ctx.pool, batch);
    total += 100;
  }
  return { rate: total / ((performance.now() - start) / 1000), total };
}
if (!fixedPeak && !process.env.BENCH_STAGES_ONLY) {
  const median = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)]!;
  const gw: number[] = [];
  const raw: number[] = [];
  const ratios: number[] = [];
  let gwBundles = 0;
  let rawBundles = 0;
  let gwCpu = '';
  let rawCpu = '';
  for (let r = 0; r < rounds; r++) {
    const runGateway = async () => {
      const meter = cpuMeter();
      const g = await gatewayRound();
      gwBundles += g.total;
      gwCpu = meter(g.total);
      gw.push(g.rate);
      return g;
    };
    const runRaw = async () => {
      const meter = cpuMeter();
      const w = await rawRound();
      rawBundles += w.total;
      rawCpu = meter(w.total);
      raw.push(w.rate);
      return w;
    };
    // Gateway first in odd rounds, raw first in even ones.
    const early = r % 2 === 0 ? await runGateway() : undefined;
    const w = await runRaw();
    const g = early ?? (await runGateway());
    ratios.push(g.rate / w.rate);
    console.log(
      `round ${r + 1}  gateway ${g.rate.toFixed(0).padStart(5)} bundles/s (p50 ${g.p50} ms, p99 ${g.p99} ms)  raw ${w.rate.toFixed(0).padStart(5)} bundles/s  gateway/raw ${(g.rate / w.rate).toFixed(2)}`,
    );
  }
  gwRate = median(gw);
  const range = (v: number[], d = 0) => `${Math.min(...v).toFixed(d)}–${Math.max(...v).toFixed(d)}`;
  console.log(
    `gateway  ${gwRate.toFixed(0).padStart(6)} bundles/s  (median of ${rounds} rounds of ${ROUND_SECONDS} s, ${range(gw)}; ${gwBundles} bundles)`,
  );
  console.log(`         last round's ${gwCpu}`);
  console.log(`raw      ${median(raw).toFixed(0).padStart(6)} bundles/s  (${range(raw)}; ${rawBundles} bundles)`);
  console.log(`         last round's ${rawCpu}`);
  console.log(`gateway/raw = ${median(ratios).toFixed(2)}  (median of the rounds' ratios, ${range(ratios, 2)})`);
}
const halfRuns = process.env.BENCH_STAGES_ONLY ? 0 : Number(process.env.BENCH_HALF_RUNS ?? 1);
for (let run = 0; run < halfRuns; run++) {
  const loop = monitorEventLoopDelay({ resolution: 5 });
  const pauses: string[] = [];
  const gc = new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      if (e.duration > 20)
        pauses.push(
          `${new Date(performance.timeOrigin + e.startTime).toISOString().slice(11, 23)} ${e.duration.toFixed(0)} ms`,
        );
  });
  if (process.env.BENCH_SLOW) {
    loop.enable();
    gc.observe({ entryTypes: ['gc'] });
  }
  const half = await paced(body, auth, SECONDS, Math.floor(gwRate / 2));
  if (process.env.BENCH_SLOW) {
    loop.disable();
    gc.disconnect();
    console.log(
      `gateway event loop delay p99 ${(loop.percentile(99) / 1e6).toFixed(1)} ms, max ${(loop.max / 1e6).toFixed(1)} ms; GC pauses > 20 ms: ${pauses.join(', ') || 'none'}`,
    );
  }
  console.log(
    `half     ${half.rate.toFixed(0).padStart(6)} bundles/s  p50 ${half.p50.toFixed(1)} ms  p90 ${half.p90.toFixed(1)} ms  p99 ${half.p99.toFixed(1)} ms  (open loop, evenly paced, ${half.errors} errors)`,
  );
}
if (process.env.BENCH_HALF_ONLY) await finish();

/**
 * Stages, per bundle, in rounds that interleave them so the machine's load falls on all alike: the
 * body's parse, its R4 validation (checkBundle; and the R4 part alone, one walk against the former
 * two), the raw ceiling's 2 signs, 2 seals and commit. The medians of the per-round figures.
 */
async function stages(rounds: number): Promise<void> {
  const bytes = Buffer.from(body);
  const parsed = parseFhirJson(decodeJsonBody(bytes), config.jsonMaxDepth) as Record<string, unknown>;
  const per = 100;
  const times = (f: () => void) => {
    const t = performance.now();
    for (let i = 0; i < per; i++) f();
    return (1000 * (performance.now() - t)) / per; // µs per bundle
  };
  const rows: Record<string, number[]> = {};
  const note = (k: string, v: number) => (rows[k] ??= []).push(v);
  for (let r = 0; r < rounds; r++) {
    note(
      'parse',
      times(() => parseFhirJson(decodeJsonBody(bytes), config.jsonMaxDepth)),
    );
    note(
      'validate',
      times(() => checkBundle(parsed)),
    );
    note(
      'r4, one walk',
      times(() => r4Issues(parsed)),
    );
    note(
      'r4, two walks (before)',
      times(() => referenceR4Issues(parsed)),
    );
    let t = performance.now();
    const sealed = await Promise.all(
      Array.from({ length: per }, () =>
        Promise.all(
          [a, b].map((p) =>
            signCompact(
              signer,
              claimsPayload(
                {
                  iss: config.org,
                  aud: p.id,
                  iat: 0,
                  jti: randomUUID(),
                  exchange: randomUUID(),
                  content_type: 'application/fhir+json',
                },
                body,
              ),
              { typ: 'exchange+jwt' },
            ),
          ),
        ),
      ),
    );
    note('sign (2)', (1000 * (performance.now() - t)) / per);
    t = performance.now();
    for (const [ja, jb] of sealed) {
      sealCompact(ja!, a.enc as never);
      sealCompact(jb!, b.enc as never);
    }
    note('seal (2)', (1000 * (performance.now() - t)) / per);
    const batch = await Promise.all(Array.from({ length: per }, record));
    t = performance.now();
    await writeIntakes(ctx.pool, batch);
    note('commit', (1000 * (performance.now() - t)) / per);
    note(
      'validate / raw',
      (rows.validate!.at(-1)! / (rows['sign (2)']!.at(-1)! + rows['seal (2)']!.at(-1)! + rows.commit!.at(-1)!)) * 100,
    );
    note('one walk / two walks', (rows['r4, one walk']!.at(-1)! / rows['r4, two walks (before)']!.at(-1)!) * 100);
  }
  const median = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)]!;
  console.log(`stages, per bundle (median of ${rounds} interleaved rounds of ${per}):`);
  for (const [k, v] of Object.entries(rows))
    console.log(
      `  ${k.padEnd(24)} ${median(v)
        .toFixed(k.includes('/') ? 1 : 0)
        .padStart(7)}${k.includes('/') ? ' %' : ' µs'}`,
    );
}
await stages(process.env.BENCH_STAGES_ONLY ? SECONDS : 15);
if (process.env.BENCH_STAGES_ONLY) await finish();

// Protocol v2 against v1 over HTTP: the same bundle, one pair of partners with post-quantum keys and one
// without, in alternating rounds; the ratio is the median of the rounds' ratios.
{
  const pqA = await partner('bench-pq-a.test', true);
  const pqB = await partner('bench-pq-b.test', true);
  const bodyV2 = bundle10k([pqA.id, pqB.id]);
  const v1: number[] = [];
  const v2: number[] = [];
  const ratios: number[] = [];
  const roundOf = async (b: string) => {
    const r = await cannon(b, auth, ROUND_SECONDS);
    if (r.non2xx) throw new Error(`${r.non2xx} non-2xx answers`);
    return r.requests.average;
  };
  await roundOf(bodyV2); // warm-up: the ML-DSA key unwrapped, the ML-KEM keys imported
  for (let r = 0; r < rounds; r++) {
    const first = r % 2 === 0 ? await roundOf(bodyV2) : undefined;
    const one = await roundOf(body);
    const two = first ?? (await roundOf(bodyV2));
    v1.push(one);
    v2.push(two);
    ratios.push(two / one);
  }
  const median = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)]!;
  const range = (v: number[], d = 0) => `${Math.min(...v).toFixed(d)}–${Math.max(...v).toFixed(d)}`;
  // What was sent: a check that the v2 rounds sealed v2, and only to the partners with post-quantum keys.
  const versions = async (ids: string[]) =>
    (
      await ctx.pool.query<{ envelope: Buffer }>(
        `SELECT (SELECT e.envelope FROM delivery_envelopes e WHERE e.delivery_id = d.id) AS envelope FROM deliveries d WHERE partner_id = ANY($1) ORDER BY created_at DESC LIMIT 50`,
        [ids],
      )
    ).rows.map((r) => envelopeVersion(unpackCompactJwe(r.envelope)));
  if (
    !(await versions([pqA.id, pqB.id])).every((v) => v === 2) ||
    !(await versions([a.id, b.id])).every((v) => v === 1)
  )
    throw new Error('the v2 rounds did not seal v2 to exactly the partners with post-quantum keys');
  console.log(
    `v2       ${median(v2).toFixed(0).padStart(6)} bundles/s  (${range(v2)})  v1 ${median(v1).toFixed(0)} bundles/s (${range(v1)})  v2/v1 = ${median(ratios).toFixed(2)}  (median of ${rounds} rounds' ratios, ${range(ratios, 2)})`,
  );
}

// Drain: JOBS deliver jobs run by a no-op task (the queue's own cost), per worker setting.
async function drain(name: string, preset: object, jobs: number): Promise<void> {
  await ctx.pool.query('DELETE FROM graphile_worker._private_jobs');
  await inTransaction(ctx.pool, (db) =>
    enqueueJobs(
      db,
      DELIVER_TASK,
      Array.from({ length: jobs }, () => randomUUID()),
    ),
  );
  let done = 0;
  let finish!: () => void;
  const finished = new Promise<void>((r) => (finish = r));
  const start = performance.now();
  const runner = await run({
    pgPool: ctx.pool,
    concurrency: 8,
    noHandleSignals: true,
    pollInterval: 1000,
    logger: silentLogger(),
    preset: { worker: preset } as never,
    taskList: {
      deliver: async () => {
        if (++done === jobs) finish();
      },
    },
  });
  await Promise.race([finished, new Promise((r) => setTimeout(r, 4 * SECONDS * 1000))]);
  const secs = (performance.now() - start) / 1000;
  await runner.stop();
  console.log(`drain ${name.padEnd(32)} ${(done / secs).toFixed(0).padStart(6)} jobs/s  (${done} of ${jobs} jobs)`);
}
await drain('defaults', {}, 5_000);
await drain(
  'localQueue 500 + batched complete',
  { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 },
  5_000,
);

await finish();
