import type pg from 'pg';
import type { Queryable } from '../db/pool.ts';
import { nodeHasher } from './hasher.ts';
import { equalHash, rootOfUnits, verifyConsistency, type Hash } from './verifier/merkle.ts';
import { noteKeyId, parseCheckpoint, parseSignedNote, utf8 } from './verifier/note.ts';
import { TILE } from './tree.ts';
import type { EvidenceKey, Problem, VerifyDeps } from './verifier/verify.ts';
import { required } from '../required.ts';

export interface DbVerifyReport {
  ok: boolean;
  entries: number;
  checkpoints: number;
  problem?: Problem;
}

const BATCH = 5_000;

/**
 * Check the live log end to end: recompute every leaf hash from its entry,
 * the tree head at every checkpoint's size, each checkpoint's signature and
 * stored consistency proof, and the stored tiles. One streaming pass, O(n).
 */
export async function verifyLiveLog(pool: pg.Pool, keys: EvidenceKey[], deps: VerifyDeps): Promise<DbVerifyReport> {
  // One snapshot for all its reads: the gateway may go on appending while it runs, and entries
  // committed between two reads would otherwise look inserted beyond the head.
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      return await verifySnapshot(client, keys, deps);
    } finally {
      await client.query('ROLLBACK');
    }
  } finally {
    client.release();
  }
}

async function verifySnapshot(db: Queryable, keys: EvidenceKey[], deps: VerifyDeps): Promise<DbVerifyReport> {
  const { rows: cps } = await db.query<{
    seq: string;
    tree_size: string;
    root_hash: Buffer;
    note: string;
    consistency: Buffer[];
    prev_size: string | null;
  }>('SELECT seq, tree_size, root_hash, note, consistency, prev_size FROM audit_checkpoints ORDER BY seq');
  const { rows: tiles } = await db.query<{ block: string; hash: Buffer }>(
    'SELECT block, hash FROM audit_tiles ORDER BY block',
  );
  const tileOf = new Map(tiles.map((t) => [Number(t.block), t.hash]));
  const { rows: head } = await db.query<{ size: string }>('SELECT size FROM audit_head');
  const size = Number(required(head[0], 'audit_head holds one row').size);
  const report: DbVerifyReport = { ok: false, entries: 0, checkpoints: cps.length };
  const bad = (p: Problem) => ({ ...report, problem: p });

  // Signatures and the stored consistency chain first: they need no leaves.
  const keyIds = new Map<string, EvidenceKey>();
  for (const k of keys) keyIds.set(`${k.name} ${noteKeyId(k, deps.sha256)}`, k);
  let prev: { size: number; root: Hash } | undefined;
  for (const [i, cp] of cps.entries()) {
    try {
      const note = parseSignedNote(cp.note);
      const body = parseCheckpoint(note.body);
      let verified = false;
      for (const s of note.signatures) {
        const key = keyIds.get(`${s.name} ${s.keyId}`);
        if (key && (await deps.verifySignature(key, utf8(note.body), s.signature))) verified = true;
      }
      if (!verified)
        return bad({
          kind: 'bad-signature',
          checkpoint: i,
          message: `checkpoint ${cp.seq}: no valid signature by an audit key`,
        });
      if (body.size !== Number(cp.tree_size) || !equalHash(body.rootHash, cp.root_hash))
        return bad({
          kind: 'changed',
          checkpoint: i,
          message: `checkpoint ${cp.seq}: stored size/root differ from its signed note`,
        });
      if (prev) verifyConsistency(nodeHasher, prev.size, body.size, cp.consistency, prev.root, body.rootHash);
      prev = { size: body.size, root: body.rootHash };
    } catch (err) {
      return bad({ kind: 'inconsistent', checkpoint: i, message: `checkpoint ${cp.seq}: ${(err as Error).message}` });
    }
  }

  // One pass over the leaves: recompute, compare, and check tree heads at checkpoint sizes.
  const sizes = new Map(cps.map((cp) => [Number(cp.tree_size), cp]));
  const blocks: Hash[] = [];
  let block: Hash[] = [];
  for (let start = 0; start < size; start += BATCH) {
    const { rows } = await db.query<{ idx: string; entry: string; leaf_hash: Buffer }>(
      'SELECT idx, entry, leaf_hash FROM audit_log WHERE idx >= $1 AND idx < $2 ORDER BY idx',
      [start, Math.min(size, start + BATCH)],
    );
    for (const [j, r] of rows.entries()) {
      const idx = start + j;
      if (Number(r.idx) !== idx)
        return bad({ kind: 'missing', index: idx, message: `entry ${idx} is missing from audit_log` });
      const h = nodeHasher.leaf(utf8(r.entry));
      if (!equalHash(h, r.leaf_hash))
        return bad({
          kind: 'changed',
          index: idx,
          message: `entry ${idx} was changed: its text no longer hashes to its stored leaf hash`,
        });
      block.push(h);
      if (block.length === TILE) {
        const t = rootOfUnits(block, nodeHasher);
        const stored = tileOf.get(blocks.length);
        if (stored && !equalHash(stored, t))
          return bad({
            kind: 'changed',
            index: blocks.length * TILE,
            message: `tile ${blocks.length} does not match its leaves`,
          });
        blocks.push(t);
        block = [];
      }
      const cp = sizes.get(idx + 1);
      if (cp) {
        const root = rootOfUnits(block.length ? [...blocks, rootOfUnits(block, nodeHasher)] : blocks, nodeHasher);
        if (!equalHash(root, cp.root_hash)) {
          return bad({
            kind: 'changed',
            checkpoint: Number(cp.seq),
            message: `the entries no longer hash to the root signed in checkpoint ${cp.seq} (size ${cp.tree_size})`,
          });
        }
      }
    }
    if (rows.length !== Math.min(size, start + BATCH) - start) {
      const missing = start + rows.length;
      return bad({ kind: 'missing', index: missing, message: `audit_log has fewer rows than audit_head (${size})` });
    }
    report.entries = Math.min(size, start + BATCH);
  }
  const { rows: extra } = await db.query<{ n: string }>(
    'SELECT count(*) AS n FROM audit_log WHERE idx >= $1 OR idx < 0',
    [size],
  );
  const beyond = Number(required(extra[0], 'count(*) returns one row').n);
  if (beyond > 0)
    return bad({
      kind: 'inserted',
      index: size,
      message: `audit_log holds ${beyond} rows beyond its head size ${size}`,
    });
  return { ...report, ok: true };
}
