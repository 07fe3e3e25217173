import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nodeHasher as H } from '../../src/audit/hasher.ts';
import {
  consistencyProofRanges,
  inclusionProofRanges,
  proofFromRanges,
  rootOfUnits,
  subtreeConsistencyRanges,
  verifyConsistency,
  verifyInclusion,
  verifySubtreeConsistency,
  verifySubtreeInclusion,
  type Hash,
  type Range,
} from '../../src/audit/verifier/merkle.ts';
import { sha256 } from '../../src/audit/verifier/sha256.ts';

const VECTORS = join(import.meta.dirname, '..', 'fixtures', 'merkle', 'testdata');
const b64 = (s: string | null | undefined) => new Uint8Array(Buffer.from(s ?? '', 'base64'));
const proofOf = (p: string[] | null) => (p ?? []).map(b64);

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : f.endsWith('.json') ? [p] : [];
  });
}

function outcome(fn: () => void): boolean {
  try {
    fn();
    return true;
  } catch {
    return false;
  }
}

/** The naive recursive RFC 6962 definition, as a reference for the fast code. */
function mth(leaves: Hash[]): Hash {
  if (leaves.length === 0) return H.empty();
  if (leaves.length === 1) return leaves[0]!;
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return H.node(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

describe('transparency-dev RFC 6962 vectors', () => {
  const groups = ['inclusion', 'consistency', 'subtreeinclusion', 'subtreeconsistency'] as const;
  for (const group of groups) {
    const all = files(join(VECTORS, group));
    it(`${group}: all ${all.length} vectors give the expected verdict`, () => {
      expect(all.length).toBeGreaterThan(10);
      const wrong: string[] = [];
      for (const file of all) {
        const v = JSON.parse(readFileSync(file, 'utf8'));
        let ok: boolean;
        if (group === 'inclusion')
          ok = outcome(() => verifyInclusion(H, v.leafIdx, v.treeSize, b64(v.leafHash), proofOf(v.proof), b64(v.root)));
        else if (group === 'consistency')
          ok = outcome(() => verifyConsistency(H, v.size1, v.size2, proofOf(v.proof), b64(v.root1), b64(v.root2)));
        else if (group === 'subtreeinclusion')
          ok = outcome(() =>
            verifySubtreeInclusion(H, v.leafIdx, v.start, v.end, b64(v.leafHash), proofOf(v.proof), b64(v.root)),
          );
        else
          ok = outcome(() =>
            verifySubtreeConsistency(H, v.start, v.end, v.size, proofOf(v.proof), b64(v.root1), b64(v.root2)),
          );
        if (ok === v.wantErr) wrong.push(`${file.slice(VECTORS.length)} (${v.desc})`);
      }
      expect(wrong).toEqual([]);
    });
  }
});

describe('proof generation', () => {
  const leaves = Array.from({ length: 70 }, (_, i) => H.leaf(Buffer.from(`entry ${i}`)));
  const sub = (r: Range) => mth(leaves.slice(r.start, r.end));

  it('rootOfUnits equals the recursive MTH for every size, and block hashes give the same root', () => {
    for (let n = 0; n <= leaves.length; n++)
      expect(Buffer.from(rootOfUnits(leaves.slice(0, n), H))).toEqual(Buffer.from(mth(leaves.slice(0, n))));
    const blocks: Hash[] = [];
    for (let i = 0; i < 70; i += 8) blocks.push(mth(leaves.slice(i, Math.min(70, i + 8))));
    expect(Buffer.from(rootOfUnits(blocks, H))).toEqual(Buffer.from(mth(leaves)));
  });

  it('every inclusion and consistency proof of trees up to 70 leaves verifies, and fails when tampered', () => {
    for (let n = 1; n <= 70; n++) {
      const root = mth(leaves.slice(0, n));
      for (let i = 0; i < n; i++) {
        const proof = proofFromRanges(inclusionProofRanges(i, n), sub);
        verifyInclusion(H, i, n, leaves[i]!, proof, root);
        if (n > 1) expect(outcome(() => verifyInclusion(H, (i + 1) % n, n, leaves[i]!, proof, root))).toBe(false);
      }
      for (let m = 1; m <= n; m++) {
        const proof = proofFromRanges(consistencyProofRanges(m, n), sub);
        verifyConsistency(H, m, n, proof, mth(leaves.slice(0, m)), root);
        if (proof.length) {
          const bad = proof.map((p) => new Uint8Array(p));
          bad[0]![0]! ^= 1;
          expect(outcome(() => verifyConsistency(H, m, n, bad, mth(leaves.slice(0, m)), root))).toBe(false);
        }
      }
    }
  });

  it('subtree consistency proofs verify for every valid subtree of trees up to 40 leaves', () => {
    for (let n = 1; n <= 40; n++) {
      const root = mth(leaves.slice(0, n));
      for (let s = 0; s < n; s++)
        for (let e = s + 1; e <= n; e++) {
          let ranges: Range[];
          try {
            ranges = subtreeConsistencyRanges(s, e, n);
          } catch {
            continue;
          }
          verifySubtreeConsistency(H, s, e, n, proofFromRanges(ranges, sub), mth(leaves.slice(s, e)), root);
        }
    }
  });
});

describe('pure SHA-256 (browser verifier)', () => {
  it('matches node:crypto on random inputs of every padding length', () => {
    for (let n = 0; n < 200; n++) {
      const data = randomBytes(n);
      expect(Buffer.from(sha256(data)).toString('hex')).toBe(createHash('sha256').update(data).digest('hex'));
    }
  });
});
