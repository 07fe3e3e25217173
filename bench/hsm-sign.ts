/**
 * ES256 signs/s on one SoftHSM token, in one run:
 *   raw      pkcs11js C_SignInit + C_Sign, synchronous, one session, precomputed digest
 *   raw-async pkcs11js C_SignAsync awaited one at a time (the thread-pool hop alone)
 *   gateway  hsmSigner -> Hsm.signDigest -> session pool, with 1, 2 and 4 sessions
 * and prints gateway/raw. Run: node_modules/.bin/node bench/hsm-sign.ts [seconds per case]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { ensureDevToken } from '../hsm/softhsm.ts';
import { Hsm } from '../hsm/hsm.ts';
import { acquireModule, pkcs11js, releaseModule } from '../hsm/module.ts';
import { findSlotByTokenLabel } from '../hsm/token.ts';
import { findKeyObject } from '../hsm/key-store.ts';
import { hsmSigner } from '../src/jose/signer.ts';

const SECONDS = Number(process.argv[2] ?? 3);
const LABEL = 'bench-sign';
const digest = createHash('sha256').update('benchmark message').digest();

const dir = mkdtempSync(join(tmpdir(), 'gw-bench-hsm-'));
const token = ensureDevToken(dir, LABEL);

type Loop = (until: number) => Promise<number>;

/**
 * Signs per second of one loop run for `ms`, and CPU microseconds per sign
 * (all threads of this process, SoftHSM's work included): on a shared machine
 * the CPU cost per sign is steadier than the rate.
 */
async function rate(loop: Loop, ms: number): Promise<{ perSecond: number; cpuUs: number }> {
  const cpu = process.cpuUsage();
  const start = performance.now();
  const count = await loop(start + ms);
  const used = process.cpuUsage(cpu);
  return { perSecond: count / ((performance.now() - start) / 1000), cpuUs: (used.user + used.system) / count };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const setup = Hsm.open({ library: token.library, tokenLabel: LABEL, pin: token.pin, sessions: 1 });
const key = await setup.generateKeyPair({ kty: 'EC', crv: 'P-256' }, 'sign', 'bench');
setup.close();

// Raw pkcs11js on one session of the same token.
const p11 = acquireModule(token.library);
const session = p11.C_OpenSession(
  findSlotByTokenLabel(p11, LABEL)!,
  pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION,
);
p11.C_Login(session, pkcs11js.CKU_USER, token.pin);
const handle = findKeyObject(p11, session, Buffer.from(key.id, 'hex'), pkcs11js.CKO_PRIVATE_KEY)!;
const mechanism = { mechanism: pkcs11js.CKM_ECDSA };
const out = Buffer.alloc(64);

const rawSync: Loop = async (until) => {
  let n = 0;
  while (performance.now() < until) {
    for (let i = 0; i < 100; i++) {
      p11.C_SignInit(session, mechanism, handle);
      p11.C_Sign(session, digest, out);
    }
    n += 100;
  }
  return n;
};
const rawAsync: Loop = async (until) => {
  let n = 0;
  while (performance.now() < until) {
    p11.C_SignInit(session, mechanism, handle);
    await p11.C_SignAsync(session, digest, out);
    n++;
  }
  return n;
};
const pools = [1, 2, 4].map((sessions) => ({
  sessions,
  hsm: Hsm.open({ library: token.library, tokenLabel: LABEL, pin: token.pin, sessions }),
}));
const gateway = (hsm: Hsm, sessions: number): Loop => {
  const signer = hsmSigner(hsm, key.id, 'ES256', 'bench');
  // Two callers per session keep every session busy: one signs while the next waits.
  return async (until) => {
    let n = 0;
    const caller = async () => {
      while (performance.now() < until) {
        await signer.signDigest(digest);
        n++;
      }
    };
    await Promise.all(Array.from({ length: sessions * 2 }, caller));
    return n;
  };
};
const cases: Array<{ name: string; loop: Loop }> = [
  { name: 'raw C_Sign (sync, 1 session)', loop: rawSync },
  { name: 'raw C_SignAsync (awaited, 1 session)', loop: rawAsync },
  ...pools.map(({ sessions, hsm }) => ({ name: `gateway pool, ${sessions} session(s)`, loop: gateway(hsm, sessions) })),
];

// The machine may be shared: interleave the cases in rounds so a burst of
// outside load hits every case alike, and compare within each round.
const ROUNDS = 10;
const roundMs = (SECONDS * 1000) / ROUNDS;
console.log(
  `HSM signing benchmark: ES256 (P-256), SoftHSM 2.6, ${cpus()[0]?.model ?? 'cpu'} x${availableParallelism()}, Node ${process.version}`,
);
console.log(
  `${ROUNDS} interleaved rounds of ${roundMs} ms per case (${SECONDS} s per case); load average at start: ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}\n`,
);
for (const c of cases) await rate(c.loop, 200); // warm up
const runs = cases.map(() => [] as Array<{ perSecond: number; cpuUs: number }>);
for (let r = 0; r < ROUNDS; r++) for (const [i, c] of cases.entries()) runs[i]!.push(await rate(c.loop, roundMs));

console.log(
  `${'case'.padEnd(38)} ${'median/s'.padStart(9)} ${'best/s'.padStart(9)} ${'ratio'.padStart(6)} ${'CPU us/sign'.padStart(12)}`,
);
for (const [i, c] of cases.entries()) {
  const rates = runs[i]!.map((x) => x.perSecond);
  // Ratio to raw C_Sign: the median of the per-round ratios (each round shares the same outside load).
  const ratios = rates.map((x, r) => x / runs[0]![r]!.perSecond);
  const cpu = median(runs[i]!.map((x) => x.cpuUs));
  console.log(
    `${c.name.padEnd(38)} ${Math.round(median(rates)).toString().padStart(9)} ${Math.round(Math.max(...rates))
      .toString()
      .padStart(9)} ${median(ratios).toFixed(2).padStart(6)} ${cpu.toFixed(1).padStart(12)}`,
  );
}
console.log(
  `\nload average at the end: ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);

for (const { hsm } of pools) hsm.close();
p11.C_CloseSession(session);
releaseModule(token.library);
rmSync(dir, { recursive: true, force: true });
