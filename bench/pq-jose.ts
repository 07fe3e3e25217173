/**
 * Protocol v2 against v1 at the JOSE level, in one run, on one SoftHSM token:
 *   seal     v1 sealCompact            v2 sealHybridCompact (+ ML-KEM encapsulation)
 *   open     v1 openCompactJwe (HSM)   v2 openHybridCompactJwe (+ decapsulation, KDF over Z || T in the token)
 *   sign     v1 ES256 compact (HSM)    v2 ES256 (HSM) + ML-DSA-65, general JSON
 *   verify   v1 ES256                  v2 ES256 + ML-DSA-65
 * Cases run interleaved in short rounds so outside load hits both alike; prints
 * each rate and the median per-round v2 / v1.
 * Run: node_modules/.bin/node bench/pq-jose.ts [seconds per case]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { importJWK } from 'jose';
import { ensureDevToken } from '../hsm/softhsm.ts';
import { Hsm } from '../hsm/hsm.ts';
import { sealCompact } from '../src/jose/seal.ts';
import { openCompactJwe, type OpenOptions } from '../src/jose/open.ts';
import { openHybridCompactJwe, sealHybridCompact } from '../src/jose/pq/hybrid-jwe.ts';
import { signDual, verifyDual } from '../src/jose/pq/dual-jws.ts';
import { signCompact } from '../src/jose/jws.ts';
import { verifyCompact } from '../src/jose/verify.ts';
import { hsmSigner } from '../src/jose/signer.ts';
import { akpThumbprint } from '../src/jose/thumbprint.ts';

const SECONDS = Number(process.argv[2] ?? 2);
const ROUNDS = 5;
const LABEL = 'bench-pq';
const dir = mkdtempSync(join(tmpdir(), 'gw-bench-pq-'));
const token = ensureDevToken(dir, LABEL);
const hsm = Hsm.open({ library: token.library, tokenLabel: LABEL, pin: token.pin, sessions: 2 });

const enc = await hsm.generateKeyPair({ kty: 'EC', crv: 'P-256' }, 'derive', 'bench-enc');
const ecJwk = { ...(enc.publicJwk as { x: string; y: string }), kty: 'EC', crv: 'P-256', kid: 'enc' };
const kem = generateKeyPairSync('ml-kem-768');
const kemPub = (kem.publicKey.export({ format: 'jwk' }) as { pub: string }).pub;
const kemJwk = { kty: 'AKP', alg: 'ML-KEM-768', pub: kemPub, kid: akpThumbprint({ alg: 'ML-KEM-768', pub: kemPub }) };
const sig = await hsm.generateKeyPair({ kty: 'EC', crv: 'P-256' }, 'sign', 'bench-sig');
const signer = hsmSigner(hsm, sig.id, 'ES256', 'sig');
const dsa = generateKeyPairSync('ml-dsa-65');
const dsaPub = (dsa.publicKey.export({ format: 'jwk' }) as { pub: string }).pub;
const pq = { kid: 'pq', privateKey: dsa.privateKey };

const open: OpenOptions = {
  hsm,
  kdf: 'in-token',
  resolveKey: async () => ({ hsmId: enc.id, crv: 'P-256', kid: 'enc' }),
};
const resolveKemKey = async () => kem.privateKey;
const payload = JSON.stringify({ resourceType: 'Bundle', entry: 'x'.repeat(10 * 1024) });
const esKey = await importJWK({ ...sig.publicJwk }, 'ES256');
const pqKey = await importJWK({ kty: 'AKP', alg: 'ML-DSA-65', pub: dsaPub }, 'ML-DSA-65');

const v1Envelope = sealCompact(payload, ecJwk);
const v2Envelope = sealHybridCompact(payload, ecJwk, kemJwk);
const v1Jws = await signCompact(signer, payload, { typ: 'exchange+jwt' });
const v2Jws = await signDual(signer, pq, payload, { typ: 'exchange+jwt' });

type Op = () => unknown;
const cases: Record<string, [Op, Op]> = {
  seal: [() => sealCompact(payload, ecJwk), () => sealHybridCompact(payload, ecJwk, kemJwk)],
  open: [() => openCompactJwe(v1Envelope, open), () => openHybridCompactJwe(v2Envelope, { ...open, resolveKemKey })],
  sign: [
    () => signCompact(signer, payload, { typ: 'exchange+jwt' }),
    () => signDual(signer, pq, payload, { typ: 'exchange+jwt' }),
  ],
  verify: [
    () => verifyCompact(v1Jws, async () => esKey),
    () => verifyDual(v2Jws, { classical: async () => esKey, pq: async () => pqKey }),
  ],
};

/** Operations per second, two in flight (the pool has two sessions). */
async function rate(op: Op, ms: number): Promise<number> {
  const start = performance.now();
  let n = 0;
  const lane = async () => {
    while (performance.now() - start < ms) {
      await op();
      n++;
    }
  };
  await Promise.all([lane(), lane()]);
  return n / ((performance.now() - start) / 1000);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const roundMs = (SECONDS * 1000) / ROUNDS;
console.log(`protocol v2 / v1, JOSE level, ${ROUNDS} interleaved rounds of ${roundMs} ms per case`);
for (const [name, [v1, v2]] of Object.entries(cases)) {
  const r1: number[] = [];
  const r2: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    r1.push(await rate(v1, roundMs));
    r2.push(await rate(v2, roundMs));
  }
  const ratio = median(r1.map((a, i) => r2[i]! / a));
  console.log(
    `${name.padEnd(7)} v1 ${median(r1).toFixed(0).padStart(6)}/s  v2 ${median(r2).toFixed(0).padStart(6)}/s  v2/v1 ${ratio.toFixed(2)}`,
  );
}
console.log(
  `sizes: envelope v1 ${v1Envelope.length} B, v2 ${v2Envelope.length} B; JWS v1 ${v1Jws.length} B, v2 ${v2Jws.length} B`,
);
hsm.close();
rmSync(dir, { recursive: true, force: true });
