import type { GatewayContext } from '../gateway-context.ts';
import { GatewayError } from '../errors.ts';
import { issueCheckpoint, latestCheckpoint, logOrigin } from '../audit/checkpoint.ts';
import { auditKeys } from '../audit/export.ts';
import { TreeReader } from '../audit/tree.ts';
import { toBase64 } from '../audit/verifier/note.ts';
import {
  EXCHANGE_EVIDENCE_FORMAT,
  type DeliveryEvidence,
  type ExchangeEvidence,
  type LogExcerpt,
  type SigningJwk,
} from '../audit/verifier/exchange.ts';
import { scopeOfSignedItem, signingKidOf } from '../directory/signing-keys.ts';
import { required } from '../required.ts';
import { signAuditKeys } from '../protocol/evidence.ts';

type Ctx = Pick<GatewayContext, 'pool' | 'keyring' | 'config' | 'directory'>;

/** The sender's entries of one exchange are few (intake, signing, sealing, attempts, receipts, evidence per recipient). */
const MAX_ENTRIES = 10_000;

const signingJwk = (jwk: object, kid: string): SigningJwk => {
  const { kty, crv, x, y } = jwk as SigningJwk;
  return { kty, crv, x, y, kid };
};

/** Our own part: every entry naming the exchange or one of its deliveries, proven in our newest checkpoint. */
async function ownExcerpt(ctx: Ctx, ids: string[]): Promise<LogExcerpt> {
  const { rows } = await ctx.pool.query<{ idx: string; entry: string }>(
    `SELECT idx, entry FROM audit_log
      WHERE (entry::jsonb -> 'entity') @> ANY (SELECT jsonb_build_array(jsonb_build_object('id', id)) FROM unnest($1::text[]) AS id)
      ORDER BY idx LIMIT $2`,
    [ids, MAX_ENTRIES],
  );
  const last = Number(required(rows.at(-1), 'the exchange has audit entries').idx);
  let cp = await latestCheckpoint(ctx.pool);
  if (!cp || cp.treeSize <= last) cp = await issueCheckpoint(ctx);
  const checkpoint = required(cp, 'a checkpoint covering the entries just read');
  const tree = new TreeReader(ctx.pool, checkpoint.treeSize);
  const entries: LogExcerpt['entries'] = [];
  for (const r of rows)
    entries.push({
      index: Number(r.idx),
      entry: r.entry,
      proof: (await tree.inclusionProof(Number(r.idx))).map(toBase64),
    });
  const origin = await logOrigin(ctx.pool, ctx.config.baseUrl);
  const keyring = await ctx.keyring.fresh();
  const signer = keyring.signer('sig');
  const own = required(
    keyring.jwks().keys.find((k) => k.kid === signer.kid),
    'the active signing key in our JWKS',
  );
  const keys = await signAuditKeys(signer, {
    iss: ctx.config.org,
    iat: Math.floor(Date.now() / 1000),
    origin,
    keys: (await auditKeys(ctx, origin)).map(({ kty, crv, x, y, kid }) => ({ kty, crv, x, y, kid })),
  });
  return {
    org: ctx.config.org,
    origin,
    signingKey: signingJwk(own, own.kid),
    keys,
    checkpoint: checkpoint.note,
    entries,
  };
}

interface DeliveryRow {
  id: string;
  partner_id: string;
  receipt: string;
  state: string | null;
  audit_index: string | null;
  entry: string | null;
  proof: Buffer[] | null;
  receipt_jwk: (object & { kid?: string }) | null;
  note: string | null;
  keys_statement: string | null;
  statement_jwk: (object & { kid?: string }) | null;
}

/** The kid of a receipt's or statement's ES256 signature (compact, or the first of a dual-signed receipt). */
const kidOf = (jws: string): string => String(signingKidOf(jws));

/**
 * One proof bundle for an exchange (docs/PROTOCOL.md section 12.4): our
 * entries with their inclusion proofs in our checkpoint, and per delivered
 * recipient its signed receipt, the recipient's audit entry for it with the
 * inclusion proof and checkpoint it gave us, and the keys that verify them.
 * Built from our database (and our HSM for the keys statement): the
 * recipients are not asked, so a recipient that is down does not matter.
 */
export async function buildExchangeEvidence(ctx: Ctx, exchangeId: string): Promise<ExchangeEvidence> {
  const part = (table: string) =>
    `SELECT d.id, d.partner_id, d.receipt FROM ${table} d WHERE d.exchange_id::text = $1 AND d.state = 'delivered' AND d.receipt IS NOT NULL`;
  const { rows } = await ctx.pool.query<DeliveryRow>(
    `SELECT d.*, e.state, e.audit_index, e.entry, e.proof, e.receipt_jwk, c.note, c.keys_statement, c.statement_jwk
       FROM (${part('deliveries')} UNION ALL ${part('imaging_deliveries')}) d
       LEFT JOIN delivery_evidence e ON e.delivery_id = d.id AND e.state = 'proven'
       LEFT JOIN partner_checkpoints c ON c.id = e.checkpoint_id
      ORDER BY d.partner_id`,
    [exchangeId],
  );
  if (rows.length === 0)
    throw new GatewayError('NOT_FOUND', `exchange ${exchangeId} has no delivered delivery with a receipt`, {
      expression: ['exchange'],
    });
  const deliveries: DeliveryEvidence[] = [];
  for (const r of rows) {
    const receiptKey = r.receipt_jwk
      ? signingJwk(r.receipt_jwk, String(r.receipt_jwk.kid ?? kidOf(r.receipt)))
      : signingJwk(
          await ctx.directory.verificationKey(r.partner_id, kidOf(r.receipt), scopeOfSignedItem(r.receipt)),
          kidOf(r.receipt),
        );
    const d: DeliveryEvidence = { delivery: r.id, recipient: r.partner_id, receipt: r.receipt, receiptKey };
    if (r.entry !== null && r.note && r.keys_statement && r.statement_jwk && r.audit_index !== null) {
      d.recipientLog = {
        org: r.partner_id,
        origin: required(r.note.split('\n')[0], 'a checkpoint origin line'),
        signingKey: signingJwk(r.statement_jwk, String(r.statement_jwk.kid ?? kidOf(r.keys_statement))),
        keys: r.keys_statement,
        checkpoint: r.note,
        entries: [{ index: Number(r.audit_index), entry: r.entry, proof: (r.proof ?? []).map(toBase64) }],
      };
    }
    deliveries.push(d);
  }
  return {
    format: EXCHANGE_EVIDENCE_FORMAT,
    exchange: exchangeId,
    createdAt: new Date().toISOString(),
    sender: await ownExcerpt(ctx, [exchangeId, ...rows.map((r) => r.id)]),
    deliveries,
  };
}
