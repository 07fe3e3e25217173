import type { GatewayContext } from '../gateway-context.ts';
import { inTransaction, type Queryable } from '../db/pool.ts';
import { nodeHasher } from './hasher.ts';
import { verifyConsistency } from './verifier/merkle.ts';
import { checkpointBody, derFromRaw, formatSignedNote, noteKeyId, utf8 } from './verifier/note.ts';
import { sha256 } from './verifier/sha256.ts';
import { fillTiles, TreeReader } from './tree.ts';
import { required } from '../required.ts';

// Serialises checkpoint issuers across processes (cron in each worker, on-demand calls).
const CHECKPOINT_LOCK = 7_273_010;

export interface CheckpointRow {
  seq: number;
  treeSize: number;
  rootHash: Buffer;
  note: string;
  keyKid: string;
  issuedAt: Date;
  prevSize: number | null;
  consistency: Buffer[];
}

interface RawRow {
  seq: string;
  tree_size: string;
  root_hash: Buffer;
  note: string;
  key_kid: string;
  issued_at: Date;
  prev_size: string | null;
  consistency: Buffer[];
}

const fromRow = (r: RawRow): CheckpointRow => ({
  seq: Number(r.seq),
  treeSize: Number(r.tree_size),
  rootHash: r.root_hash,
  note: r.note,
  keyKid: r.key_kid,
  issuedAt: r.issued_at,
  prevSize: r.prev_size === null ? null : Number(r.prev_size),
  consistency: r.consistency,
});

export class AuditTamperError extends Error {
  override name = 'AuditTamperError';
}

/** The log's name in checkpoints (and the signing key's note name): host[:port]/audit, fixed by the first checkpoint. */
export function defaultOrigin(baseUrl: string): string {
  return `${new URL(baseUrl).host}/audit`;
}

export async function latestCheckpoint(db: Queryable): Promise<CheckpointRow | undefined> {
  const { rows } = await db.query<RawRow>('SELECT * FROM audit_checkpoints ORDER BY seq DESC LIMIT 1');
  return rows[0] && fromRow(rows[0]);
}

export async function logOrigin(db: Queryable, baseUrl: string): Promise<string> {
  const { rows } = await db.query<{ note: string }>('SELECT note FROM audit_checkpoints ORDER BY seq LIMIT 1');
  // A checkpoint note starts with its origin line, and split always yields a first element.
  return rows[0] ? required(rows[0].note.split('\n')[0], 'a first line') : defaultOrigin(baseUrl);
}

/** Checkpoints with seq in [fromSeq, toSeq], in order. */
export async function checkpointRange(db: Queryable, fromSeq: number, toSeq: number): Promise<CheckpointRow[]> {
  const { rows } = await db.query<RawRow>('SELECT * FROM audit_checkpoints WHERE seq BETWEEN $1 AND $2 ORDER BY seq', [
    fromSeq,
    toSeq,
  ]);
  return rows.map(fromRow);
}

/** The first checkpoint whose tree includes leaf `index` (size > index). */
export async function firstCheckpointCovering(db: Queryable, index: number): Promise<CheckpointRow | undefined> {
  const { rows } = await db.query<RawRow>('SELECT * FROM audit_checkpoints WHERE tree_size > $1 ORDER BY seq LIMIT 1', [
    index,
  ]);
  return rows[0] && fromRow(rows[0]);
}

export async function committedSize(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ size: string }>('SELECT size FROM audit_head');
  return Number(required(rows[0], 'audit_head holds one row').size);
}

/**
 * Sign a checkpoint of the log as committed now, with the HSM audit key, if
 * it grew since the last one (or `force`). Before signing, the new tree must
 * be provably consistent with the previous checkpoint: a rewritten history is
 * refused (AuditTamperError), never signed over.
 */
export async function issueCheckpoint(
  ctx: Pick<GatewayContext, 'pool' | 'keyring' | 'config'>,
  options: { force?: boolean } = {},
): Promise<CheckpointRow | undefined> {
  // The transaction-scoped lock serialises issuers across processes and is released by COMMIT or ROLLBACK.
  return inTransaction(ctx.pool, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1)', [CHECKPOINT_LOCK]);
    const size = await committedSize(client);
    const last = await latestCheckpoint(client);
    if (size === 0 || (last && last.treeSize === size && !options.force)) return last; // nothing written: commits nothing
    await fillTiles(client, size);
    const tree = new TreeReader(client, size);
    const root = await tree.root();
    let consistency: Uint8Array[] = [];
    if (last) {
      consistency = await tree.consistencyProof(last.treeSize);
      try {
        verifyConsistency(nodeHasher, last.treeSize, size, consistency, last.rootHash, root);
      } catch (err) {
        throw new AuditTamperError(
          `the audit log is no longer consistent with checkpoint ${last.seq} (size ${last.treeSize}): ${(err as Error).message}`,
        );
      }
    }
    const origin = await logOrigin(client, ctx.config.baseUrl);
    const keyring = await ctx.keyring.fresh(10_000);
    const signer = keyring.signer('audit');
    const key = keyring.active('audit');
    const body = checkpointBody(origin, size, root);
    const signature = derFromRaw(await signer.sign(utf8(body)));
    const note = formatSignedNote(body, [{ name: origin, keyId: noteKeyId(key.public_jwk, sha256), signature }]);
    const { rows } = await client.query<RawRow>(
      `INSERT INTO audit_checkpoints (seq, tree_size, root_hash, note, key_kid, prev_size, consistency)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *`,
      [
        last ? last.seq + 1 : 0,
        size,
        root,
        note,
        key.kid,
        last?.treeSize ?? null,
        consistency.map((h) => Buffer.from(h)),
      ],
    );
    return fromRow(required(rows[0], 'INSERT ... RETURNING yields the row'));
  });
}
