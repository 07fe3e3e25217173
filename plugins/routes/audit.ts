import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { GatewayContext } from '../../src/gateway-context.ts';
import { GatewayError } from '../../src/errors.ts';
import { committedSize, issueCheckpoint, latestCheckpoint, logOrigin } from '../../src/audit/checkpoint.ts';
import { auditKeys, buildEvidencePack, toEvidenceCheckpoint } from '../../src/audit/export.ts';
import { searchsetBundle, toAuditEvent, type LogEntry } from '../../src/audit/fhir.ts';
import { toBase64 } from '../../src/audit/verifier/note.ts';
import { parseAuditQuery, searchAudit } from '../../src/audit/search.ts';
import { TreeReader } from '../../src/audit/tree.ts';
import { auditReader } from './audit-guard.ts';
import { refuseCrossSite } from './session-csrf.ts';
import { replyRead } from './fhir-read.ts';
import { FHIR_REST } from '../route-policy.ts';
import { parsePrefer } from '../../src/fhir/rest/prefer.ts';
import { postedSearchParams } from './fhir-search-body.ts';
import { lookupBlinds, type BlindedPatient } from '../../src/compliance/blind.ts';
import {
  accountOfDisclosures,
  auditPatientQuery,
  parseDisclosureQuery,
  type Requester,
} from '../../src/compliance/disclosures.ts';

type Query = Record<string, string | string[] | undefined>;

/** Who is asking, as the audit names them: the signed-in person, or the API client. */
function requester(req: FastifyRequest): Requester {
  if (req.auditUser) return { type: 'user', id: req.auditUser, network: req.ip };
  return { type: 'client', id: req.principal?.clientId ?? 'unknown', network: req.ip };
}

/** A non-negative whole number query parameter, or the fallback; 400 OperationOutcome otherwise. */
function intParam(q: Query, name: string, fallback?: number): number {
  const raw = q[name];
  if (raw === undefined || raw === '') {
    if (fallback === undefined)
      throw new GatewayError('INVALID_VALUE', `query parameter ${name} is required`, { expression: [name] });
    return fallback;
  }
  if (typeof raw !== 'string' || !/^\d{1,15}$/.test(raw))
    throw new GatewayError('INVALID_VALUE', `${name} must be a non-negative whole number`, { expression: [name] });
  return Number(raw);
}

/**
 * The audit trail: FHIR AuditEvent search (IHE BALP), signed checkpoints,
 * inclusion and consistency proofs, and evidence packs for offline checks.
 */
export function auditRoutes(ctx: GatewayContext): FastifyPluginAsync {
  return async (app) => {
    const guard = auditReader(ctx);
    app.addHook('onRequest', refuseCrossSite(ctx, 'session'));
    const observer = { org: ctx.config.org, baseUrl: ctx.config.baseUrl };
    const noStore = { 'Cache-Control': 'no-store' };

    const search = async (req: FastifyRequest, reply: FastifyReply, params: Query) => {
      const query = parseAuditQuery(params, parsePrefer(req.headers.prefer).handling);
      const asked: BlindedPatient[] = [];
      const { entries, total, more } = await searchAudit(ctx.pool, query, async (ids) => {
        const blinds = await lookupBlinds(ctx, ids);
        asked.push(...blinds);
        return blinds.map((b) => Buffer.from(b.blind, 'base64url'));
      });
      if (asked.length) await auditPatientQuery(ctx, requester(req), asked, { via: 'fhir-search', matches: total });
      const base = `${ctx.config.baseUrl}/fhir/AuditEvent`;
      const link = (pairs: Array<[string, string]>) =>
        pairs.length ? `${base}?${new URLSearchParams(pairs).toString()}` : base;
      const last = entries.at(-1);
      // The next page starts after this page's last entry, whatever is appended meanwhile.
      const next =
        more && last
          ? link([
              ...query.applied.filter(([k]) => k !== '_cursor' && k !== '_offset'),
              ['_cursor', String(last.index)],
            ])
          : undefined;
      return reply
        .headers(noStore)
        .type('application/fhir+json')
        .send(
          searchsetBundle(
            entries.map((e) => toAuditEvent(e, observer)),
            total,
            link(query.applied),
            next,
          ),
        );
    };
    const fhir = { config: FHIR_REST, preHandler: guard };
    app.get('/fhir/AuditEvent', fhir, (req, reply) => search(req, reply, req.query as Query));
    // POST _search: the same parameters in a form body (and the query string), for clients that keep them out of URLs.
    app.post('/fhir/AuditEvent/_search', fhir, (req, reply) => search(req, reply, postedSearchParams(req)));

    app.get<{ Params: { id: string } }>('/fhir/AuditEvent/:id', fhir, async (req, reply) => {
      if (!/^\d{1,15}$/.test(req.params.id))
        throw new GatewayError('NOT_FOUND', `no AuditEvent ${req.params.id.slice(0, 40)}`);
      const { rows } = await ctx.pool.query<{ entry: string }>('SELECT entry FROM audit_log WHERE idx = $1', [
        req.params.id,
      ]);
      if (!rows[0]) throw new GatewayError('NOT_FOUND', `no AuditEvent ${req.params.id}`);
      const entry = JSON.parse(rows[0].entry) as LogEntry;
      return replyRead(req, reply.headers(noStore), toAuditEvent(entry, observer), new Date(entry.recorded));
    });

    const checkpointReply = async () => {
      const cp = (await latestCheckpoint(ctx.pool)) ?? (await issueCheckpoint(ctx));
      if (!cp) throw new GatewayError('NOT_FOUND', 'the audit log is empty; no checkpoint yet');
      const origin = await logOrigin(ctx.pool, ctx.config.baseUrl);
      const key = (await auditKeys(ctx, origin)).find((k) => k.kid === cp.keyKid);
      return {
        origin,
        treeSize: cp.treeSize,
        rootHash: toBase64(cp.rootHash),
        keyId: cp.keyKid,
        key,
        ...toEvidenceCheckpoint(cp, true),
        prevSize: cp.prevSize,
      };
    };
    app.get('/audit/checkpoint', { preHandler: guard }, async (_req, reply) =>
      reply.headers(noStore).send(await checkpointReply()),
    );
    // On demand: sign a checkpoint now if the log grew (the cron does it every minute anyway).
    app.post('/audit/checkpoint', { preHandler: guard }, async (_req, reply) => {
      await issueCheckpoint(ctx);
      return reply.headers(noStore).send(await checkpointReply());
    });

    app.get('/audit/proof/inclusion', { preHandler: guard }, async (req, reply) => {
      const q = req.query as Query;
      const latest = await latestCheckpoint(ctx.pool);
      const size = intParam(q, 'size', latest?.treeSize ?? (await committedSize(ctx.pool)));
      const index = intParam(q, 'index');
      if (size > (await committedSize(ctx.pool)))
        throw new GatewayError('NOT_FOUND', `the audit log is smaller than ${size}`, { expression: ['size'] });
      if (index >= size)
        throw new GatewayError('INVALID_VALUE', `index must be below size (${size})`, { expression: ['index'] });
      const tree = new TreeReader(ctx.pool, size);
      const proof = await tree.inclusionProof(index);
      return reply.headers(noStore).send({
        index,
        treeSize: size,
        leafHash: toBase64(await tree.leafHash(index)),
        rootHash: toBase64(await tree.root()),
        proof: proof.map(toBase64),
      });
    });

    app.get('/audit/proof/consistency', { preHandler: guard }, async (req, reply) => {
      const q = req.query as Query;
      const latest = await latestCheckpoint(ctx.pool);
      const from = intParam(q, 'from');
      const to = intParam(q, 'to', latest?.treeSize ?? (await committedSize(ctx.pool)));
      if (from < 1 || from > to)
        throw new GatewayError('INVALID_VALUE', 'consistency proofs need 1 <= from <= to', {
          expression: ['from', 'to'],
        });
      if (to > (await committedSize(ctx.pool)))
        throw new GatewayError('NOT_FOUND', `the audit log is smaller than ${to}`, { expression: ['to'] });
      const tree = new TreeReader(ctx.pool, to);
      const proof = await tree.consistencyProof(from);
      return reply
        .headers(noStore)
        .send({ from, to, proof: proof.map(toBase64), rootHash: toBase64(await tree.root()) });
    });

    // The accounting of disclosures: the identifier travels in the body, never in a URL.
    app.post('/audit/disclosures', { preHandler: guard }, async (req, reply) => {
      const query = parseDisclosureQuery(req.body);
      const report = await accountOfDisclosures(ctx, query, requester(req), req.auditUser ? 'audit-ui' : 'api');
      return reply.headers(noStore).send(report);
    });

    app.get('/audit/export', { preHandler: guard }, async (req, reply) => {
      const q = req.query as Query;
      const size = await committedSize(ctx.pool);
      const from = intParam(q, 'from', 0);
      const to = intParam(q, 'to', size);
      if (size === 0) throw new GatewayError('NOT_FOUND', 'the audit log is empty');
      const pack = await buildEvidencePack(ctx, from, to);
      return reply
        .headers(noStore)
        .header('Content-Disposition', `attachment; filename="audit-evidence-${from}-${to}.json"`)
        .send(pack);
    });
  };
}
