import type { Queryable } from '../db/pool.ts';
import { nodeHasher } from './hasher.ts';
import { consistencyProofRanges, inclusionProofRanges, rootOfUnits, type Hash, type Range } from './verifier/merkle.ts';
import { required } from '../required.ts';

/** Leaves per tile: complete aligned blocks of 256 leaves have their hash stored in audit_tiles. */
export const TILE = 256;

export async function leafHashes(db: Queryable, start: number, end: number): Promise<Buffer[]> {
  if (end <= start) return [];
  const { rows } = await db.query<{ idx: string; leaf_hash: Buffer }>(
    'SELECT idx, leaf_hash FROM audit_log WHERE idx >= $1 AND idx < $2 ORDER BY idx',
    [start, end],
  );
  if (rows.length !== end - start || rows.some((r, i) => Number(r.idx) !== start + i)) {
    throw new Error(
      `audit_log leaves [${start}, ${end}) are not all present (found ${rows.length}); the log has a gap`,
    );
  }
  return rows.map((r) => r.leaf_hash);
}

/**
 * The Merkle tree of the first `size` leaves, read from PostgreSQL. Large
 * subtrees are hashed from the stored tile hashes (n/256 units), small ones
 * from leaf hashes; every hash is memoised for the reader's lifetime, so an
 * export of many proofs against one tree size reads each block once.
 */
export class TreeReader {
  readonly size: number;
  readonly #db: Queryable;
  #tiles: Map<number, Hash> | undefined;
  readonly #blocks = new Map<number, Buffer[]>();
  readonly #memo = new Map<string, Hash>();

  constructor(db: Queryable, size: number) {
    this.#db = db;
    this.size = size;
  }

  async #block(b: number): Promise<Buffer[]> {
    let leaves = this.#blocks.get(b);
    if (!leaves) {
      leaves = await leafHashes(this.#db, b * TILE, Math.min(this.size, (b + 1) * TILE));
      this.#blocks.set(b, leaves);
    }
    return leaves;
  }

  async #tile(b: number): Promise<Hash> {
    if (!this.#tiles) {
      const { rows } = await this.#db.query<{ block: string; hash: Buffer }>(
        'SELECT block, hash FROM audit_tiles WHERE block < $1',
        [Math.floor(this.size / TILE)],
      );
      this.#tiles = new Map(rows.map((r) => [Number(r.block), r.hash]));
    }
    let h = this.#tiles.get(b);
    if (!h) {
      h = rootOfUnits(await this.#block(b), nodeHasher);
      this.#tiles.set(b, h);
    }
    return h;
  }

  async subtreeHash(r: Range): Promise<Hash> {
    const key = `${r.start}-${r.end}`;
    let h = this.#memo.get(key);
    if (h) return h;
    if (r.end > this.size) throw new Error(`range [${r.start}, ${r.end}) is beyond tree size ${this.size}`);
    if (r.start % TILE === 0 && r.end - r.start > TILE) {
      const units: Hash[] = [];
      const fullEnd = Math.floor(r.end / TILE);
      for (let b = r.start / TILE; b < fullEnd; b++) units.push(await this.#tile(b));
      if (r.end % TILE) units.push(rootOfUnits(await this.#leaves(fullEnd * TILE, r.end), nodeHasher));
      h = rootOfUnits(units, nodeHasher);
    } else {
      h = rootOfUnits(await this.#leaves(r.start, r.end), nodeHasher);
    }
    this.#memo.set(key, h);
    return h;
  }

  async #leaves(start: number, end: number): Promise<Buffer[]> {
    const out: Buffer[] = [];
    for (let b = Math.floor(start / TILE); b * TILE < end; b++) {
      const block = await this.#block(b);
      const lo = Math.max(start, b * TILE) - b * TILE;
      const hi = Math.min(end, (b + 1) * TILE) - b * TILE;
      out.push(...block.slice(lo, hi));
    }
    return out;
  }

  async leafHash(index: number): Promise<Hash> {
    return required((await this.#leaves(index, index + 1))[0], `leaf ${index} to be stored`);
  }

  root(): Promise<Hash> {
    return this.subtreeHash({ start: 0, end: this.size });
  }

  async #resolve(ranges: Range[]): Promise<Hash[]> {
    const out: Hash[] = [];
    for (const r of ranges) out.push(await this.subtreeHash(r));
    return out;
  }

  inclusionProof(index: number): Promise<Hash[]> {
    return this.#resolve(inclusionProofRanges(index, this.size));
  }

  /** PROOF(from, D[this.size]). */
  consistencyProof(from: number): Promise<Hash[]> {
    return this.#resolve(consistencyProofRanges(from, this.size));
  }
}

/** Store the hash of every complete block of leaves below `size` that has none yet (the checkpoint issuer's job). */
export async function fillTiles(db: Queryable, size: number): Promise<number> {
  const { rows } = await db.query<{ next: string }>('SELECT COALESCE(MAX(block) + 1, 0) AS next FROM audit_tiles');
  const complete = Math.floor(size / TILE);
  let written = 0;
  for (let b = Number(required(rows[0], 'an aggregate query returns one row').next); b < complete; b++) {
    const hash = rootOfUnits(await leafHashes(db, b * TILE, (b + 1) * TILE), nodeHasher);
    await db.query('INSERT INTO audit_tiles (block, hash) VALUES ($1, $2)', [b, hash]);
    written++;
  }
  return written;
}
