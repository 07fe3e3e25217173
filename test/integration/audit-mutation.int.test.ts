import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendAudit } from '../../src/audit/append.ts';
import { issueCheckpoint } from '../../src/audit/checkpoint.ts';
import { buildEvidencePack } from '../../src/audit/export.ts';
import { nodeVerifyDeps } from '../../src/audit/verify-node.ts';
import {
  verifyEvidencePack,
  type EvidencePack,
  type ProblemKind,
  type VerifyDeps,
} from '../../src/audit/verifier/verify.ts';
import { inTransaction } from '../../src/db/pool.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

let gw: TestGateway;
let pack: EvidencePack;

beforeAll(async () => {
  gw = await startTestGateway({}, { listen: false });
  const ctx = gw.app.ctx;
  // A log of a few hundred entries with several checkpoints along the way.
  for (let round = 0; round < 4; round++) {
    await inTransaction(ctx.pool, (c) =>
      appendAudit(
        c,
        Array.from(
          { length: 70 },
          (_, i) =>
            ({
              type: (['intake.accepted', 'delivery.attempt', 'delivery.receipt', 'auth.failure'] as const)[i % 4]!,
              outcome: i % 5 === 0 ? 'serious-failure' : 'success',
              agent: { type: 'partner', id: `org-${i % 7}` },
              entity: [
                {
                  type: 'exchange',
                  id: `ex-${round}-${i}`,
                  digest: `sha256:${(round * 100 + i).toString(16).padStart(64, '0')}`,
                },
              ],
            }) as const,
        ),
      ),
    );
    await issueCheckpoint(ctx);
  }
  pack = await buildEvidencePack(ctx, 100, 164);
});
afterAll(async () => {
  await gw?.close();
});

/** Deterministic PRNG so a failure is reproducible. */
function rng(seed: number) {
  let s = seed >>> 0;
  return (n: number) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
}

describe('mutation test: every single change to an exported log is detected and named', () => {
  it('detects and classifies 10,000 random byte flips, deletions, insertions and reorders', async () => {
    // Signature checks are memoised: the mutations rarely touch checkpoints, and ECDSA dominates otherwise.
    const sigCache = new Map<string, boolean>();
    const deps: VerifyDeps = {
      ...nodeVerifyDeps,
      memo: new Map(),
      verifySignature: (jwk, data, sig) => {
        const k = `${jwk.x}|${Buffer.from(data).toString('base64')}|${Buffer.from(sig).toString('base64')}`;
        let v = sigCache.get(k);
        if (v === undefined) sigCache.set(k, (v = nodeVerifyDeps.verifySignature(jwk, data, sig) as boolean));
        return v;
      },
    };
    const baseline = await verifyEvidencePack(pack, deps);
    expect(baseline.ok).toBe(true);
    expect(pack.checkpoints.length).toBeGreaterThanOrEqual(3);

    const rand = rng(0x5eed);
    const n = pack.entries.length;
    const counts: Record<string, number> = {};
    const undetected: string[] = [];
    const misnamed: string[] = [];
    const flip = (s: string) => {
      const bytes = Buffer.from(s, 'utf8');
      bytes[rand(bytes.length)]! ^= 1 + rand(255);
      return new TextDecoder().decode(bytes);
    };
    for (let t = 0; t < 10_000; t++) {
      const entries = [...pack.entries];
      let mutated: EvidencePack = { ...pack, entries };
      let want: { kind: ProblemKind[]; index?: number };
      const op = ['flip', 'delete', 'insert', 'reorder', 'checkpoint', 'proof', 'consistency'][
        t < 9000 ? t % 4 : 4 + (t % 3)
      ]!;
      if (op === 'flip') {
        const p = rand(n);
        entries[p] = flip(entries[p]!);
        want = { kind: ['changed'], index: pack.from + p };
      } else if (op === 'delete') {
        const p = rand(n);
        entries.splice(p, 1);
        want = { kind: ['missing'], index: pack.from + p };
      } else if (op === 'insert') {
        const p = rand(n + 1);
        const src = entries[rand(n)]!;
        entries.splice(p, 0, rand(2) ? src : flip(src)); // a replayed genuine entry, or a forged one
        want = { kind: ['inserted'], index: pack.from + p };
      } else if (op === 'reorder') {
        const a = rand(n);
        let b = rand(n - 1);
        if (b >= a) b++;
        if (rand(2)) [entries[a], entries[b]] = [entries[b]!, entries[a]!];
        else entries.splice(b, 0, entries.splice(a, 1)[0]!);
        want = { kind: ['reordered'], index: pack.from + Math.min(a, b) };
      } else if (op === 'checkpoint') {
        const c = rand(pack.checkpoints.length);
        const checkpoints = [...pack.checkpoints];
        checkpoints[c] = { ...checkpoints[c]!, note: flip(checkpoints[c]!.note) };
        mutated = { ...mutated, checkpoints };
        want = { kind: ['bad-signature'] };
      } else if (op === 'consistency') {
        const linked = pack.checkpoints.map((c, i) => (c.consistency?.length ? i : -1)).filter((i) => i >= 0);
        const c = linked[rand(linked.length)]!;
        const checkpoints = [...pack.checkpoints];
        const proof = [...checkpoints[c]!.consistency!];
        const h = rand(proof.length);
        const raw = Buffer.from(proof[h]!, 'base64');
        raw[rand(32)]! ^= 1 + rand(255);
        proof[h] = raw.toString('base64');
        checkpoints[c] = { ...checkpoints[c]!, consistency: proof };
        mutated = { ...mutated, checkpoints };
        want = { kind: ['inconsistent'] };
      } else {
        const p = rand(n);
        const proofs = [...pack.inclusionProofs];
        const proof = [...proofs[p]!];
        const h = rand(proof.length);
        const raw = Buffer.from(proof[h]!, 'base64');
        raw[rand(32)]! ^= 1 + rand(255);
        proof[h] = raw.toString('base64');
        proofs[p] = proof;
        mutated = { ...mutated, inclusionProofs: proofs };
        want = { kind: ['changed'], index: pack.from + p };
      }
      counts[op] = (counts[op] ?? 0) + 1;
      const report = await verifyEvidencePack(mutated, deps);
      if (report.ok) undetected.push(`#${t} ${op}`);
      else if (
        !want.kind.includes(report.problem!.kind) ||
        (want.index !== undefined && report.problem!.index !== want.index)
      ) {
        misnamed.push(
          `#${t} ${op}: wanted ${want.kind.join('|')}@${want.index}, got ${report.problem!.kind}@${report.problem!.index}: ${report.problem!.message}`,
        );
      }
    }
    expect(undetected).toEqual([]);
    expect(misnamed.slice(0, 10)).toEqual([]);
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(10_000);
  }, 120_000);
});
