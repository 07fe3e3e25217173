/**
 * RFC 9162 / RFC 6962 Merkle tree math: tree heads, inclusion and consistency
 * proofs, and their verifiers, plus the subtree proofs of
 * draft-ietf-plants-merkle-tree-certs (section 4), which generalise both.
 *
 * Pure: no I/O and no node: imports, so the browser page runs this very file
 * (served with its types stripped). The hash function is injected.
 * Sizes and indexes are JS numbers (safe integers); no 32-bit bit operators,
 * so trees beyond 2^31 leaves stay correct.
 */

export type Hash = Uint8Array;

/** SHA-256 with the RFC 6962 domain separation: leaf = H(0x00||d), node = H(0x01||l||r). */
export interface Hasher {
  leaf(data: Uint8Array): Hash;
  node(left: Hash, right: Hash): Hash;
  /** MTH({}) = H(""). */
  empty(): Hash;
}

/** Build a Hasher from any synchronous SHA-256. */
export function makeHasher(sha256: (data: Uint8Array) => Uint8Array): Hasher {
  const prefixed = (prefix: number, ...parts: Uint8Array[]) => {
    const buf = new Uint8Array(1 + parts.reduce((n, p) => n + p.length, 0));
    buf[0] = prefix;
    let o = 1;
    for (const p of parts) {
      buf.set(p, o);
      o += p.length;
    }
    return sha256(buf);
  };
  return { leaf: (d) => prefixed(0, d), node: (l, r) => prefixed(1, l, r), empty: () => sha256(new Uint8Array(0)) };
}

export class ProofError extends Error {
  override name = 'ProofError';
}

/** A half-open leaf range [start, end); proofs are lists of such subtree hashes. */
export interface Range {
  start: number;
  end: number;
}

const half = (n: number) => Math.floor(n / 2);
const lsb = (n: number) => n % 2 === 1;

/** Largest power of two strictly smaller than n (n >= 2). */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function checkSize(name: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new ProofError(`${name} must be a non-negative safe integer`);
}

/** draft-ietf-plants-merkle-tree-certs 4.1: [start, end) is an interior node of some tree. */
export function isValidSubtree(start: number, end: number): boolean {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || start >= end) return false;
  let s = 1;
  while (s < end - start) s *= 2;
  return start % s === 0;
}

export function equalHash(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] === b[i] ? 0 : 1;
  return diff === 0;
}

/**
 * MTH over already-hashed units, in O(n) time and O(log n) memory: units are
 * leaf hashes, or hashes of aligned blocks of 2^k leaves (all full except the
 * last), for which the RFC 6962 split rule gives the same tree.
 */
export function rootOfUnits(units: readonly Hash[], hasher: Hasher): Hash {
  if (units.length === 0) return hasher.empty();
  // Stack of perfect subtrees; sizes strictly decrease from bottom to top.
  const stack: Array<{ hash: Hash; size: number }> = [];
  for (const u of units) {
    let cur = { hash: u, size: 1 };
    for (let left = stack[stack.length - 1]; left?.size === cur.size; left = stack[stack.length - 1]) {
      stack.pop();
      cur = { hash: hasher.node(left.hash, cur.hash), size: cur.size * 2 };
    }
    stack.push(cur);
  }
  // Fold the right border: smaller (right) subtrees join their left neighbours.
  const last = stack.pop();
  if (last === undefined) throw new Error('rootOfUnits: the stack holds at least the last unit');
  let acc = last.hash;
  for (const left of stack.reverse()) acc = hasher.node(left.hash, acc);
  return acc;
}

/** RFC 9162 2.1.3.1 PATH(m, D[n]) as the subtree ranges whose hashes form the proof, bottom-up. */
export function inclusionProofRanges(index: number, size: number): Range[] {
  checkSize('size', size);
  if (!Number.isSafeInteger(index) || index < 0 || index >= size)
    throw new ProofError(`index ${index} is outside a tree of size ${size}`);
  const out: Range[] = [];
  const walk = (m: number, lo: number, hi: number) => {
    const n = hi - lo;
    if (n <= 1) return;
    const k = splitPoint(n);
    if (m < k) {
      walk(m, lo, lo + k);
      out.push({ start: lo + k, end: hi });
    } else {
      walk(m - k, lo + k, hi);
      out.push({ start: lo, end: lo + k });
    }
  };
  walk(index, 0, size);
  return out;
}

/**
 * Subtree consistency proof ranges (MTC draft 4.4.1); with start = 0 this is
 * RFC 9162 2.1.4.1 PROOF(end, D[n]).
 */
export function subtreeConsistencyRanges(start: number, end: number, n: number): Range[] {
  checkSize('size', n);
  if (!isValidSubtree(start, end) || end > n)
    throw new ProofError(`[${start}, ${end}) is not a subtree of a tree of size ${n}`);
  const out: Range[] = [];
  const walk = (s: number, e: number, lo: number, hi: number, known: boolean) => {
    const size = hi - lo;
    if (s === 0 && e === size) {
      if (!known) out.push({ start: lo, end: hi });
      return;
    }
    const k = splitPoint(size);
    if (e <= k) {
      walk(s, e, lo, lo + k, known);
      out.push({ start: lo + k, end: hi });
    } else if (k <= s) {
      walk(s - k, e - k, lo + k, hi, known);
      out.push({ start: lo, end: lo + k });
    } else {
      walk(0, e - k, lo + k, hi, false);
      out.push({ start: lo, end: lo + k });
    }
  };
  walk(start, end, 0, n, true);
  return out;
}

export function consistencyProofRanges(size1: number, size2: number): Range[] {
  if (size1 === 0 || size1 === size2) {
    if (size1 > size2) throw new ProofError(`size1 ${size1} > size2 ${size2}`);
    return [];
  }
  return subtreeConsistencyRanges(0, size1, size2);
}

/**
 * Evaluate a subtree inclusion proof (MTC draft 4.3.2 = RFC 9162 2.1.3.2 with
 * leaf_index = index - start, tree_size = end - start); returns the subtree hash.
 */
export function rootFromSubtreeInclusion(
  hasher: Hasher,
  index: number,
  start: number,
  end: number,
  leafHash: Hash,
  proof: readonly Hash[],
): Hash {
  {
    if (!isValidSubtree(start, end)) throw new ProofError(`[${start}, ${end}) is not a valid subtree`);
    if (!Number.isSafeInteger(index) || index < start || index >= end)
      throw new ProofError(`index ${index} is outside [${start}, ${end})`);
    if (leafHash.length !== 32) throw new ProofError('leaf hash must be 32 bytes');
    let fn = index - start;
    let sn = end - start - 1;
    let r = leafHash;
    for (const p of proof) {
      if (sn === 0) throw new ProofError('inclusion proof is too long');
      if (lsb(fn) || fn === sn) {
        r = hasher.node(p, r);
        while (!lsb(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      } else {
        r = hasher.node(r, p);
      }
      fn = half(fn);
      sn = half(sn);
    }
    if (sn !== 0) throw new ProofError('inclusion proof is too short');
    return r;
  }
}

export function verifySubtreeInclusion(
  hasher: Hasher,
  index: number,
  start: number,
  end: number,
  leafHash: Hash,
  proof: readonly Hash[],
  root: Hash,
): void {
  const got = rootFromSubtreeInclusion(hasher, index, start, end, leafHash, proof);
  if (!equalHash(got, root)) throw new ProofError('inclusion proof does not lead to the expected root');
}

/** RFC 9162 2.1.3.2: leaf `index` with hash leafHash is in the tree of `size` with root `root`. Throws ProofError. */
export function verifyInclusion(
  hasher: Hasher,
  index: number,
  size: number,
  leafHash: Hash,
  proof: readonly Hash[],
  root: Hash,
): void {
  checkSize('size', size);
  verifySubtreeInclusion(hasher, index, 0, size, leafHash, proof, root);
}

/** MTC draft 4.4.3: subtree [start, end) with hash nodeHash is consistent with the tree of size n with root rootHash. */
export function verifySubtreeConsistency(
  hasher: Hasher,
  start: number,
  end: number,
  n: number,
  proof: readonly Hash[],
  nodeHash: Hash,
  rootHash: Hash,
): void {
  checkSize('size', n);
  if (start === end && Number.isSafeInteger(start) && start >= 0 && end <= n) {
    // The empty subtree is trivially consistent with anything, if it is what it claims.
    if (proof.length !== 0) throw new ProofError('proof for an empty subtree must be empty');
    if (!equalHash(nodeHash, hasher.empty())) throw new ProofError('empty subtree hash is not MTH({})');
    return;
  }
  if (!isValidSubtree(start, end) || end > n)
    throw new ProofError(`[${start}, ${end}) is not a subtree of a tree of size ${n}`);
  let fn = start;
  let sn = end - 1;
  let tn = n - 1;
  const shift = () => {
    fn = half(fn);
    sn = half(sn);
    tn = half(tn);
  };
  if (sn === tn) {
    while (fn !== sn) shift();
  } else {
    while (fn !== sn && lsb(sn)) shift();
  }
  let rest = proof;
  let fr: Hash;
  let sr: Hash;
  if (fn === sn) {
    fr = sr = nodeHash;
  } else {
    const [first, ...others] = rest;
    if (first === undefined) throw new ProofError('consistency proof is empty');
    fr = sr = first;
    rest = others;
  }
  for (const c of rest) {
    if (tn === 0) throw new ProofError('consistency proof is too long');
    if (lsb(sn) || sn === tn) {
      if (fn < sn) fr = hasher.node(c, fr);
      sr = hasher.node(c, sr);
      while (!lsb(sn) && sn !== 0) shift();
    } else {
      sr = hasher.node(sr, c);
    }
    shift();
  }
  if (tn !== 0) throw new ProofError('consistency proof is too short');
  if (!equalHash(fr, nodeHash)) throw new ProofError('consistency proof does not reproduce the first root');
  if (!equalHash(sr, rootHash)) throw new ProofError('consistency proof does not reproduce the second root');
}

/** RFC 9162 2.1.4.2: the tree of size1 (root1) is a prefix of the tree of size2 (root2). Throws ProofError. */
export function verifyConsistency(
  hasher: Hasher,
  size1: number,
  size2: number,
  proof: readonly Hash[],
  root1: Hash,
  root2: Hash,
): void {
  checkSize('size1', size1);
  checkSize('size2', size2);
  if (size1 > size2) throw new ProofError(`size1 ${size1} > size2 ${size2}`);
  if (size1 === 0) throw new ProofError('a consistency proof from the empty tree proves nothing');
  verifySubtreeConsistency(hasher, 0, size1, size2, proof, root1, root2);
}

/** Resolve proof ranges to hashes with a subtree-hash source (in memory or backed by storage). */
export function proofFromRanges(ranges: readonly Range[], subtreeHash: (r: Range) => Hash): Hash[] {
  return ranges.map(subtreeHash);
}
