import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import type { JWK } from 'jose';
import { startTwoGateways, type Peer, type TwoGateways } from '../helpers/two-gateways.ts';
import { testClient, type TestClient } from '../helpers/auth.ts';
import { messageBundle, waitFor } from '../helpers/outbound.ts';
import { startTestRecipient, type TestRecipient } from '../helpers/recipient.ts';
import { claimsFor, publishedEncKey, seal, signContent, softPartner, type SoftPartner } from '../helpers/envelopes.ts';
import { cleanEnv, runCli } from '../helpers/cli.ts';
import { SCOPE_AUDIT_READ } from '../../src/auth/scopes.ts';
import { TOKEN_PATH, ASSERTION_TYPE } from '../../src/auth/token-endpoint.ts';
import { envelopeDigest } from '../../src/protocol/wire.ts';
import { AGENT_IDS, ENTITY_IDS, EVENT_CODES, OUTCOME_CODE } from '../../src/audit/fhir.ts';
import { verifyEvidencePack } from '../../src/audit/verifier/verify.ts';
import { nodeVerifyDeps } from '../../src/audit/verify-node.ts';

/**
 * Audit completeness: an end-to-end run across gateways A and B
 * (plus a scripted fake recipient R behind A for delivery faults) produces
 * every kind of event; each one, counted from the HTTP side and the
 * database side, must have exactly one audit entry, read both through
 * GET /fhir/AuditEvent and straight from audit_log. Counts are exact per
 * type: a pipeline that forgets an entry, or writes two, fails the test.
 */
const SYNTHEA = join(import.meta.dirname, '../fixtures/synthea');
const SMALL = [
  'Clemente_Kreiger_1484a42d-0eaf-4654-9cbf-6b050a5cd73b.json',
  'Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json',
  'Ned_Hintz_e4b9259d-0f54-48d1-a35d-b526729a4dfe.json',
];
const BODY_LIMIT = 1024 * 1024;
const INBOX_LIMIT = 2 * 1024 * 1024;

/** One audit entry, normalised so the database row and the FHIR AuditEvent compare equal. */
interface Ev {
  idx: number;
  type: string;
  outcome: string;
  agent: { type: string; id: string } | undefined;
  entity: Array<{ type: string; id: string; digest?: string }>;
  detail: Record<string, string>;
}

const str = (v: unknown) => (v === null || v === undefined ? 'null' : String(v));

function fromEntry(text: string): Ev {
  const e = JSON.parse(text) as {
    index: number;
    type: string;
    outcome: string;
    agent?: { type: string; id: string };
    entity?: Ev['entity'];
    detail?: Record<string, unknown>;
  };
  return {
    idx: e.index,
    type: e.type,
    outcome: e.outcome,
    agent: e.agent ? { type: e.agent.type, id: e.agent.id } : undefined,
    entity: (e.entity ?? []).map((x) => ({ type: x.type, id: x.id, ...(x.digest ? { digest: x.digest } : {}) })),
    detail: Object.fromEntries(Object.entries(e.detail ?? {}).map(([k, v]) => [k, str(v)])),
  };
}

type Coding = { system?: string; code?: string };
type Ident = { identifier?: { system?: string; value?: string } };
interface AuditEventResource {
  id: string;
  subtype: Coding[];
  outcome: string;
  agent: Array<{ who: Ident }>;
  entity: Array<{ what?: Ident; description?: string; detail?: Array<{ type: string; valueString: string }> }>;
}
const OUTCOME_NAME = Object.fromEntries(Object.entries(OUTCOME_CODE).map(([k, v]) => [v, k]));

function fromAuditEvent(r: AuditEventResource): Ev {
  // The entry's agent is the counterpart; this gateway is an agent too (BALP), and the entry's agent only when alone.
  const idents = r.agent.map((a) => a.who.identifier).filter((i) => i?.system?.startsWith(`${AGENT_IDS}:`));
  const agentIdent = idents.find((i) => i?.system !== `${AGENT_IDS}:gateway`) ?? idents[0];
  return {
    idx: Number(r.id),
    // The gateway's own type is the last subtype, after the BALP pattern's standard ones.
    type: r.subtype.find((s) => s.system === EVENT_CODES)!.code!,
    outcome: OUTCOME_NAME[r.outcome]!,
    agent: agentIdent ? { type: agentIdent.system!.slice(AGENT_IDS.length + 1), id: agentIdent.value! } : undefined,
    entity: r.entity
      .filter((x) => x.what?.identifier?.system?.startsWith(`${ENTITY_IDS}:`))
      .map((x) => {
        const digest = x.detail?.find((d) => d.type === 'digest')?.valueString;
        return {
          type: x.what!.identifier!.system!.slice(ENTITY_IDS.length + 1),
          id: x.what!.identifier!.value!,
          ...(digest ? { digest } : {}),
        };
      }),
    detail: Object.fromEntries(
      (r.entity.find((x) => x.description === 'event detail (no PHI)')?.detail ?? []).map((d) => [
        d.type,
        d.valueString,
      ]),
    ),
  };
}

const ent = (e: Ev, type: string) => e.entity.filter((x) => x.type === type);
const one = (e: Ev, type: string) => {
  const xs = ent(e, type);
  return xs.length === 1 ? xs[0]! : { id: `<${xs.length} ${type}>`, digest: undefined };
};

/** How each event type is identified: the key must be unique per real-world event where ids exist. */
const KEY: Record<string, (e: Ev) => string> = {
  'auth.token-issued': (e) => `${e.agent?.id}`,
  'auth.failure': (e) => `${e.agent?.id}|${e.detail.route ?? e.detail.endpoint}|${e.detail.reason}`,
  'authz.denied': (e) => `${e.agent?.id}|${e.detail.method} ${e.detail.route}`,
  'intake.accepted': (e) => `${one(e, 'exchange').id}|${one(e, 'exchange').digest}`,
  'intake.refused': (e) => `${e.agent?.id}|${e.detail.route}|${e.detail.status}|${e.detail.code}`,
  'exchange.signed': (e) => `${one(e, 'delivery').id}|${one(e, 'exchange').id}`,
  'exchange.sealed': (e) => `${one(e, 'delivery').id}|${one(e, 'delivery').digest}`,
  'delivery.attempt': (e) =>
    `${one(e, 'delivery').id}|${one(e, 'exchange').id}|#${e.detail.attempt}|${e.detail.result}|${e.detail.status}|${e.outcome}`,
  'delivery.receipt': (e) => `${one(e, 'delivery').id}|${one(e, 'receipt').id}`,
  'delivery.failed': (e) => `${one(e, 'delivery').id}|${e.detail.reason}|${e.detail.status}`,
  'inbox.accepted': (e) =>
    `${e.agent?.id}|${one(e, 'inbox-message').id}|${one(e, 'inbox-message').digest}|${one(e, 'delivery').id}|${one(e, 'exchange').id}|${one(e, 'receipt').id}`,
  'inbox.duplicate': (e) => `${e.agent?.id}|${one(e, 'inbox-message').id}|${one(e, 'delivery').id}`,
  'inbox.refused': (e) => `${one(e, 'envelope').digest}|${e.detail.status}|${e.detail.reason}`,
  'inbox.read': (e) => `${e.agent?.id}|${one(e, 'inbox-message').id}|${e.outcome}`,
  'inbox.acknowledged': (e) => `${e.agent?.id}|${one(e, 'inbox-message').id}`,
  'inbox.processed': (e) => `${e.agent?.id}|${one(e, 'inbox-message').id}|${one(e, 'processed-receipt').id}`,
  'processed-receipt.attempt': (e) =>
    `${e.agent?.id}|${one(e, 'processed-receipt').id}|${one(e, 'inbox-message').id}|#${e.detail.attempt}|${e.outcome}`,
  'processed-receipt.failed': (e) => `${one(e, 'processed-receipt').id}|${e.detail.reason}`,
  'delivery.processed': (e) => `${e.agent?.id}|${one(e, 'delivery').id}|${one(e, 'processed-receipt').id}`,
  'partner-key.first-seen': (e) => `${e.agent?.id}|${one(e, 'partner-key').id}`,
};

const MULTI = new Set(['auth.token-issued', 'auth.failure', 'authz.denied', 'intake.refused']);

function tally(keys: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of keys) out[k] = (out[k] ?? 0) + 1;
  return out;
}

/** What the run should have logged on one gateway: event type -> keys, one per real event. */
type Expected = Record<string, string[]>;

/**
 * The evidence exchange between gateways runs from a cron sweep every minute, so how many of its entries a run
 * has depends on the clock (delivery-evidence.int.test.ts counts them). Here they are held to their own rules:
 * at most one delivery.evidence per delivered receipt, and evidence served only to a partner.
 */
const BACKGROUND = new Set(['partner-log.checkpoint', 'delivery.evidence', 'evidence.served']);

function checkBackground(side: string, evs: Ev[]): void {
  const receipted = new Set(evs.filter((e) => e.type === 'delivery.receipt').map((e) => one(e, 'delivery').id));
  const proven = evs.filter((e) => e.type === 'delivery.evidence').map((e) => one(e, 'delivery').id);
  expect(new Set(proven).size, `${side}: one delivery.evidence per delivery`).toBe(proven.length);
  for (const id of proven) expect(receipted.has(id), `${side}: delivery.evidence of a receipted delivery`).toBe(true);
  for (const e of evs.filter((x) => x.type === 'evidence.served'))
    expect(e.agent?.type, `${side}: evidence served to a partner`).toBe('partner');
}

function checkCompleteness(side: string, all: Ev[], expected: Expected): void {
  checkBackground(side, all);
  const evs = all.filter((e) => !BACKGROUND.has(e.type));
  const types = tally(evs.map((e) => e.type));
  const wantTypes = Object.fromEntries(
    Object.entries(expected)
      .filter(([, ks]) => ks.length)
      .map(([t, ks]) => [t, ks.length]),
  );
  expect(types, `${side}: entries per type`).toEqual(wantTypes);
  for (const [type, keys] of Object.entries(expected)) {
    const got = tally(evs.filter((e) => e.type === type).map(KEY[type]!));
    expect(got, `${side}: ${type} entries, one per event`).toEqual(tally(keys));
    // Events with their own ids are unique; token grants and refusals repeat per client and code.
    if (!MULTI.has(type)) for (const [k, n] of Object.entries(got)) expect(n, `${side}: ${type} ${k}`).toBe(1);
  }
}

interface Refusal {
  route: string;
  status: number;
  code: string;
}

describe('audit completeness: every event of an end-to-end run has exactly one entry', () => {
  let t: TwoGateways;
  let r: TestRecipient;
  let soft: SoftPartner;
  let auditorA: TestClient;
  let auditorB: TestClient;
  let auditA: string;
  let auditB: string;
  const dir = mkdtempSync(join(tmpdir(), 'audit-complete-'));

  beforeAll(async () => {
    t = await startTwoGateways({ BODY_LIMIT: String(BODY_LIMIT), INBOX_BODY_LIMIT: String(INBOX_LIMIT) });
    const { a, b } = t;
    r = await startTestRecipient({
      senderId: a.gw.config.org,
      senderJwks: async () => a.gw.app.ctx.keyring.jwks() as unknown as { keys: JWK[] },
    });
    await request(a.gw.app.server)
      .post('/admin/partners')
      .set('authorization', await a.admin.bearer())
      .send({ id: r.id, name: 'fake recipient', endpoint: r.inbox, jwks_uri: r.jwksUri })
      .expect(201);
    // A software partner of B's, for duplicates and replays at B's inbox.
    soft = await softPartner(`urn:test:soft-${randomUUID().slice(0, 8)}`);
    await request(b.gw.app.server)
      .post('/admin/partners')
      .set('authorization', await b.admin.bearer())
      .send({ id: soft.id, name: 'soft partner', endpoint: 'http://127.0.0.1:9/soft-inbox', jwks: soft.jwks })
      .expect(201);
    auditorA = await testClient(a.gw, { scopes: [SCOPE_AUDIT_READ] });
    auditorB = await testClient(b.gw, { scopes: [SCOPE_AUDIT_READ] });
    auditA = await auditorA.bearer();
    auditB = await auditorB.bearer();
  }, 60_000);
  afterAll(async () => {
    await t?.close();
    await r?.close();
  });

  it(
    'counts every 202, refusal, attempt, receipt and auth failure, through the API and the table, and the log verifies',
    { timeout: 90_000 },
    async () => {
      const { a, b } = t;
      const aOrg = a.gw.config.org;
      const bOrg = b.gw.config.org;
      const head = async (p: Peer) =>
        Number((await p.gw.app.ctx.pool.query('SELECT size FROM audit_head')).rows[0].size);
      const keysSeen = async (p: Peer) =>
        (
          await p.gw.app.ctx.pool.query<{ partner_id: string; kid: string }>(
            'SELECT partner_id, kid FROM partner_keys_seen',
          )
        ).rows.map((x) => `${x.partner_id}|${x.kid}`);
      const startA = await head(a);
      const startB = await head(b);
      const keysBeforeA = new Set(await keysSeen(a));
      const keysBeforeB = new Set(await keysSeen(b));
      const tokenHashes = async (p: Peer) =>
        (
          await p.gw.app.ctx.pool.query<{ h: string; client_id: string }>(
            "SELECT encode(token_hash, 'hex') AS h, client_id FROM auth_access_tokens",
          )
        ).rows;
      const tokensBeforeA = new Set((await tokenHashes(a)).map((x) => x.h));
      const tokensBeforeB = new Set((await tokenHashes(b)).map((x) => x.h));

      // Every successful token request, counted at the HTTP side.
      const tokens = { a: [] as string[], b: [] as string[] };
      const bearer = async (side: 'a' | 'b', c: TestClient) => {
        const tok = await c.bearer();
        tokens[side].push(c.id);
        return tok;
      };
      const ehrA = await bearer('a', a.ehr);
      const ehrB = await bearer('b', b.ehr);

      // ---- A: accepted intakes (202) ----
      const accepted: string[] = [];
      const submit = async (path: string, body: string, headers: Record<string, string> = {}) => {
        const res = await request(a.gw.app.server)
          .post(path)
          .set('authorization', ehrA)
          .set(headers)
          .type('application/fhir+json')
          .send(body);
        expect(res.status, `${path}: ${JSON.stringify(res.body).slice(0, 300)}`).toBe(202);
        const id = (res.headers['content-location'] as string).split('/').pop()!;
        accepted.push(id);
        return id;
      };
      const toB = encodeURIComponent(bOrg);
      const toR = encodeURIComponent(r.id);
      for (const f of SMALL) await submit(`/exchanges?recipient=${toB}`, readFileSync(join(SYNTHEA, f), 'utf8'));
      // An idempotent replay answers 202 again with the same exchange: one acceptance, one entry.
      const idem = { 'idempotency-key': `k-${randomUUID()}` };
      const idemBody = messageBundle([bOrg], 1_500, 'idempotent');
      const first = await submit('/fhir/$process-message', idemBody, idem);
      expect(await submit('/fhir/$process-message', idemBody, idem)).toBe(first);

      const view = async (id: string) =>
        (await request(a.gw.app.server).get(`/exchanges/${id}`).set('authorization', ehrA).expect(200)).body as {
          recipients: Array<{ partner: string; state: string }>;
        };
      const settle = (id: string, want: string) =>
        waitFor(
          `exchange ${id} ${want}`,
          async () => {
            const v = await view(id);
            return v.recipients.every((x) => x.state === want) ? v : undefined;
          },
          30_000,
          100,
        );

      // R answers 503 once, then accepts: a transient failure, a retry, a receipt.
      r.script.push({ kind: 'status', status: 503 });
      const transient = await submit('/fhir/$process-message', messageBundle([r.id], 1_500, 'transient'));
      await settle(transient, 'delivered');
      // R answers 400: a permanent failure, no retry.
      r.script.push({ kind: 'status', status: 400 });
      const permanent = await submit(`/exchanges?recipient=${toR}`, messageBundle([r.id], 1_500, 'permanent'));
      await settle(permanent, 'failed');
      // One intake to two recipients.
      await submit(`/exchanges?recipient=${toB}&recipient=${toR}`, readFileSync(join(SYNTHEA, SMALL[0]!), 'utf8'));
      for (const id of accepted) await settle(id, id === permanent ? 'failed' : 'delivered');
      expect(r.posts.map((p) => p.answered)).toEqual(['503', 'ok', '400', 'ok']);

      // ---- A: refused intakes (4xx), each with its OperationOutcome code ----
      const refusals: Refusal[] = [];
      const refuse = async (path: string, body: string | Buffer, type: string) => {
        const res = await request(a.gw.app.server)
          .post(path)
          .set('authorization', ehrA)
          .set('content-type', type)
          .send(body);
        expect(res.status, `${path} ${String(body).slice(0, 60)}`).toBeGreaterThanOrEqual(400);
        expect(res.status).toBeLessThan(500);
        const code = res.body?.issue?.[0]?.details?.coding?.[0]?.code as string;
        expect(code, JSON.stringify(res.body)).toBeTruthy();
        refusals.push({ route: path.split('?')[0]!, status: res.status, code });
      };
      const fhir = 'application/fhir+json';
      await refuse(`/exchanges?recipient=${toB}`, '{"resourceType": "Bundle", ', fhir);
      await refuse(`/exchanges?recipient=${toB}`, messageBundle([bOrg]), 'application/json');
      await refuse(`/exchanges?recipient=${toB}`, '{"resourceType":"Patient","id":"p1"}', fhir);
      await refuse(
        '/fhir/$process-message',
        JSON.stringify({
          resourceType: 'Bundle',
          type: 'message',
          entry: [{ fullUrl: 'urn:uuid:0c3a3e3a-1f1e-4c8e-9b1a-3c5d7e9f1a20', resource: { resourceType: 'Patient' } }],
        }),
        fhir,
      );
      await refuse('/fhir/$process-message', messageBundle(['urn:test:nobody']), fhir);
      await refuse(`/exchanges?recipient=${toB}`, messageBundle([bOrg], BODY_LIMIT + 10_000), fhir);
      await refuse(
        `/exchanges?recipient=${toB}`,
        '{"resourceType":"Bundle","type":"collection","__proto__":{"x":1},"entry":[]}',
        fhir,
      );
      const dup = JSON.parse(messageBundle([bOrg])) as { entry: Array<{ fullUrl: string }> };
      dup.entry[1]!.fullUrl = dup.entry[0]!.fullUrl;
      await refuse('/fhir/$process-message', JSON.stringify(dup), fhir);
      expect(refusals.map((x) => x.status)).toContain(413);
      expect(refusals.map((x) => x.status)).toContain(415);

      // ---- authentication failures (401) and authorization denials (403), both gateways ----
      const authFailures = { a: [] as string[], b: [] as string[] };
      const denials = { a: [] as string[], b: [] as string[] };
      const bad401 = async (side: 'a' | 'b', method: 'get' | 'post', url: string, route: string, auth?: string) => {
        const gw = side === 'a' ? a.gw : b.gw;
        let req = request(gw.app.server)[method](url);
        if (auth) req = req.set('authorization', auth);
        const res = await req;
        expect(res.status, `${method} ${url}`).toBe(401);
        authFailures[side].push(`unknown|${route}|${auth ? 'invalid_token' : 'missing_token'}`);
      };
      await bad401('a', 'get', `/exchanges/${accepted[0]}`, '/exchanges/:id', 'Bearer not-a-real-token');
      await bad401('a', 'post', `/exchanges?recipient=${toB}`, '/exchanges');
      await bad401('b', 'get', '/inbox/messages', '/inbox/messages', 'Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
      await bad401('b', 'get', '/fhir/AuditEvent', '/fhir/AuditEvent');

      // Bad client assertions at POST /auth/token: another key under the client's kid, an unknown client, a disallowed scope.
      const tokenRequest = async (
        side: 'a' | 'b',
        assertion: string,
        scope: string,
        expectStatus: number,
        expected: string,
      ) => {
        const gw = side === 'a' ? a.gw : b.gw;
        const res = await request(gw.app.server).post(TOKEN_PATH).type('form').send({
          grant_type: 'client_credentials',
          client_assertion_type: ASSERTION_TYPE,
          client_assertion: assertion,
          scope,
        });
        expect(res.status, JSON.stringify(res.body)).toBe(expectStatus);
        authFailures[side].push(expected);
        return res.body as { error: string };
      };
      const stranger = await testClient(a.gw, { scopes: [SCOPE_AUDIT_READ] });
      const forgedAssertion = await stranger.assertion({ iss: a.ehr.id, sub: a.ehr.id }, { kid: a.ehr.kid });
      expect(
        (
          await tokenRequest(
            'a',
            forgedAssertion,
            'system/Bundle.write',
            401,
            `${a.ehr.id}|${TOKEN_PATH}|signature_invalid`,
          )
        ).error,
      ).toBe('invalid_client');
      expect(
        (
          await tokenRequest(
            'a',
            await stranger.assertion({ iss: 'urn:test:no-such-client', sub: 'urn:test:no-such-client' }),
            'system/Bundle.write',
            401,
            `unknown|${TOKEN_PATH}|unknown_client`,
          )
        ).error,
      ).toBe('invalid_client');
      expect(
        (
          await tokenRequest(
            'b',
            await b.ehr.assertion(),
            'system/gateway.admin',
            400,
            `${b.ehr.id}|${TOKEN_PATH}|scope_not_allowed`,
          )
        ).error,
      ).toBe('invalid_scope');

      // 403: a valid token without the scope the route needs.
      const deny = async (
        side: 'a' | 'b',
        method: 'get' | 'post',
        url: string,
        auth: string,
        who: string,
        route: string,
      ) => {
        const gw = side === 'a' ? a.gw : b.gw;
        const res = await request(gw.app.server)
          [method](url)
          .set('authorization', auth)
          .type('application/fhir+json')
          .send(method === 'post' ? messageBundle([bOrg]) : undefined);
        expect(res.status, `${method} ${url}`).toBe(403);
        denials[side].push(`${who}|${method.toUpperCase()} ${route}`);
      };
      await deny('a', 'post', `/exchanges?recipient=${toB}`, auditA, auditorA.id, '/exchanges');
      await deny('a', 'get', '/fhir/AuditEvent', ehrA, a.ehr.id, '/fhir/AuditEvent');
      await deny('a', 'get', '/admin/partners', ehrA, a.ehr.id, '/admin/partners');
      await deny('b', 'get', '/audit/export', ehrB, b.ehr.id, '/audit/export');

      // ---- B: inbound refusals, a duplicate and a replay ----
      const bEnc = await publishedEncKey(b.gw.url);
      const inboxRefusals: string[] = [];
      const post = (envelope: string, type = 'application/jose') =>
        request(b.gw.app.server).post('/inbox').set('content-type', type).send(envelope);
      const refuseInbox = async (envelope: string, why: string) => {
        const res = await post(envelope);
        expect(res.status, `${why}: ${JSON.stringify(res.body)}`).toBeGreaterThanOrEqual(400);
        expect(res.status).toBeLessThan(500);
        inboxRefusals.push(`${envelopeDigest(envelope)}|${res.status}|${res.body.issue[0].details.coding[0].code}`);
      };
      await refuseInbox('not-a-jwe', 'not a JWE');
      const stranger2 = await softPartner('urn:test:not-in-directory');
      await refuseInbox(
        seal(bEnc, await signContent(stranger2, claimsFor(stranger2, bOrg, { resourceType: 'Bundle' }))),
        'unknown sender',
      );
      // Forged: claims A's identity, signed with another key under a made-up kid.
      const forger = { ...stranger2, id: aOrg };
      await refuseInbox(
        seal(bEnc, await signContent(forger, claimsFor(forger, bOrg, { resourceType: 'Bundle' }))),
        'forged sender',
      );
      const good = seal(
        bEnc,
        await signContent(soft, claimsFor(soft, bOrg, { resourceType: 'Bundle', type: 'collection', entry: [] })),
      );
      const parts = good.split('.');
      parts[4] = Buffer.from(Buffer.from(parts[4]!, 'base64url').map((x, i) => (i === 0 ? x ^ 1 : x))).toString(
        'base64url',
      );
      await refuseInbox(parts.join('.'), 'bad tag');
      await refuseInbox(
        seal(bEnc, await signContent(soft, claimsFor(soft, bOrg, { resourceType: 'Bundle' })), { zip: 'DEF' }),
        'zip',
      );
      await refuseInbox(
        seal(bEnc, await signContent(soft, claimsFor(soft, 'urn:test:someone-else', { resourceType: 'Bundle' }))),
        'wrong aud',
      );
      // Accepted from the soft partner, then the same bytes again (duplicate), then other bytes with the same jti (replay).
      const softClaims = claimsFor(soft, bOrg, { resourceType: 'Bundle', type: 'collection', entry: [] });
      const softEnvelope = seal(bEnc, await signContent(soft, softClaims));
      const softRes = await post(softEnvelope).expect(200);
      expect(softRes.text.split('.')).toHaveLength(3);
      await post(softEnvelope).expect(200);
      await refuseInbox(
        seal(
          bEnc,
          await signContent(soft, {
            ...softClaims,
            content: { resourceType: 'Bundle', type: 'collection', entry: [], id: 'other' },
          }),
        ),
        'replayed jti',
      );
      // Not a JWE media type: refused before it is opened, but still a refusal.
      const wrongType = await post('{"not":"jose"}', 'text/plain');
      expect(wrongType.status).toBe(415);
      inboxRefusals.push(`${envelopeDigest('{"not":"jose"}')}|415|UNSUPPORTED_MEDIA_TYPE`);
      // Refused by the body parser, before the route runs: no bytes read, so no envelope digest.
      expect((await post('x'.repeat(64), 'application/octet-stream')).status).toBe(415);
      inboxRefusals.push('undefined|415|UNSUPPORTED_MEDIA_TYPE');
      expect((await post('x'.repeat(INBOX_LIMIT + 1))).status).toBe(413);
      inboxRefusals.push('undefined|413|PAYLOAD_TOO_LARGE');

      // ---- B's EHR pulls and acknowledges everything it received ----
      const list = await request(b.gw.app.server)
        .get('/inbox/messages?_count=1000')
        .set('authorization', ehrB)
        .expect(200);
      const pulled: string[] = [];
      for (const m of list.body.messages as Array<{ id: string }>) {
        await request(b.gw.app.server).get(`/inbox/messages/${m.id}`).set('authorization', ehrB).expect(200);
        await request(b.gw.app.server).post(`/inbox/messages/${m.id}/$ack`).set('authorization', ehrB).expect(200);
        pulled.push(m.id);
      }

      // Each acknowledgement owes its sender a processed receipt: A takes its own; the soft partner's inbox is closed.
      await waitFor(
        'the processed receipts to settle',
        async () =>
          (
            await b.gw.app.ctx.pool.query(
              `SELECT 1 FROM processed_receipts HAVING count(*) = $1 AND count(*) FILTER (WHERE state = 'pending') = 0`,
              [pulled.length],
            )
          ).rows[0],
        60_000,
        200,
      );

      // ---- the expected entries, from the HTTP side and the database side ----
      const endA = await head(a);
      const endB = await head(b);
      const q = async <T>(p: Peer, sql: string) => (await p.gw.app.ctx.pool.query(sql)).rows as T[];
      const exchanges = await q<{ id: string; content_digest: string }>(a, 'SELECT id, content_digest FROM exchanges');
      const deliveries = await q<{
        id: string;
        exchange_id: string;
        envelope_digest: string;
        state: string;
        receipt_jti: string | null;
        partner_id: string;
      }>(a, 'SELECT id, exchange_id, envelope_digest, state, receipt_jti, partner_id FROM deliveries');
      const attempts = await q<{ delivery_id: string; attempt: number; outcome: string; http_status: number | null }>(
        a,
        'SELECT delivery_id, attempt, outcome, http_status FROM delivery_attempts',
      );
      const inbox = await q<{
        id: string;
        sender: string;
        jti: string;
        exchange_id: string;
        envelope_digest: string;
        receipt_id: string;
        state: string;
      }>(b, 'SELECT id, sender, jti, exchange_id, envelope_digest, receipt_id, state FROM inbox_messages');
      const processedReceipts = await q<{
        id: string;
        message_id: string;
        partner_id: string;
        state: string;
        attempts: number;
      }>(b, 'SELECT id, message_id, partner_id, state, attempts FROM processed_receipts');
      const processedAtA = await q<{ id: string; processed_receipt_jti: string }>(
        a,
        'SELECT id, processed_receipt_jti FROM deliveries WHERE processed_receipt_jti IS NOT NULL',
      );
      const tokenRows = async (p: Peer, before: Set<string>) =>
        (await tokenHashes(p)).filter((x) => !before.has(x.h)).map((x) => x.client_id);

      // The database agrees with what the HTTP side saw.
      expect(new Set(exchanges.map((x) => x.id))).toEqual(new Set(accepted));
      expect(deliveries).toHaveLength(new Set(accepted).size + 1); // one per exchange, plus the second recipient of the last
      expect(deliveries.filter((d) => d.state === 'failed')).toHaveLength(1);
      expect(attempts.filter((x) => x.outcome === 'transient')).toHaveLength(1);
      expect(attempts.filter((x) => x.outcome === 'permanent')).toHaveLength(1);
      expect(attempts).toHaveLength(deliveries.length + 1);
      expect(inbox).toHaveLength(deliveries.filter((d) => d.partner_id === bOrg).length + 1);
      expect(inbox.every((m) => m.state === 'acknowledged')).toBe(true);
      expect(pulled.sort()).toEqual(inbox.map((m) => m.id).sort());
      // B owes A a processed receipt per acknowledged message from A, and sent each once; A stored each.
      expect(processedReceipts.map((x) => x.message_id).sort()).toEqual([...pulled].sort());
      const toA = processedReceipts.filter((x) => x.partner_id === aOrg);
      expect(toA.every((x) => x.state === 'sent' && x.attempts === 1)).toBe(true);
      expect(processedReceipts.filter((x) => x.partner_id === soft.id).every((x) => x.state === 'failed')).toBe(true);
      expect(processedAtA.map((x) => x.processed_receipt_jti).sort()).toEqual(toA.map((x) => x.id).sort());
      // A's stored receipts are B's issued receipts.
      for (const d of deliveries.filter((x) => x.partner_id === bOrg))
        expect(inbox.find((m) => m.jti === d.id)?.receipt_id).toBe(d.receipt_jti);

      const newKeys = async (p: Peer, before: Set<string>) => (await keysSeen(p)).filter((k) => !before.has(k));
      const expectedA: Expected = {
        'auth.token-issued': tokens.a,
        'auth.failure': authFailures.a,
        'authz.denied': denials.a,
        'intake.accepted': exchanges.map((x) => `${x.id}|${x.content_digest}`),
        'intake.refused': refusals.map((x) => `${a.ehr.id}|${x.route}|${x.status}|${x.code}`),
        'exchange.signed': deliveries.map((d) => `${d.id}|${d.exchange_id}`),
        'exchange.sealed': deliveries.map((d) => `${d.id}|${d.envelope_digest}`),
        'delivery.attempt': attempts.map(
          (x) =>
            `${x.delivery_id}|${deliveries.find((d) => d.id === x.delivery_id)!.exchange_id}|#${x.attempt}|${x.outcome}|${str(x.http_status)}|${x.outcome === 'delivered' ? 'success' : 'minor-failure'}`,
        ),
        'delivery.receipt': deliveries.filter((d) => d.state === 'delivered').map((d) => `${d.id}|${d.receipt_jti}`),
        'delivery.failed': deliveries.filter((d) => d.state === 'failed').map((d) => `${d.id}|permanent|400`),
        'delivery.processed': processedAtA.map((d) => `${bOrg}|${d.id}|${d.processed_receipt_jti}`),
        'partner-key.first-seen': await newKeys(a, keysBeforeA),
      };
      const expectedB: Expected = {
        'auth.token-issued': tokens.b,
        'auth.failure': authFailures.b,
        'authz.denied': denials.b,
        'inbox.accepted': inbox.map(
          (m) => `${m.sender}|${m.id}|${m.envelope_digest}|${m.jti}|${m.exchange_id}|${m.receipt_id}`,
        ),
        'inbox.duplicate': inbox.filter((m) => m.sender === soft.id).map((m) => `${soft.id}|${m.id}|${m.jti}`),
        'inbox.refused': inboxRefusals,
        'inbox.read': pulled.map((id) => `${b.ehr.id}|${id}|success`),
        'inbox.acknowledged': pulled.map((id) => `${b.ehr.id}|${id}`),
        'inbox.processed': processedReceipts.map((x) => `${b.ehr.id}|${x.message_id}|${x.id}`),
        'processed-receipt.attempt': processedReceipts.flatMap((x) =>
          Array.from(
            { length: x.attempts },
            (_, i) =>
              `${x.partner_id}|${x.id}|${x.message_id}|#${i + 1}|${x.state === 'sent' && i + 1 === x.attempts ? 'success' : 'minor-failure'}`,
          ),
        ),
        'processed-receipt.failed': processedReceipts
          .filter((x) => x.state === 'failed')
          .map((x) => `${x.id}|retries exhausted`),
        'partner-key.first-seen': await newKeys(b, keysBeforeB),
      };
      // Tokens: the HTTP count equals the rows the token endpoint wrote.
      expect((await tokenRows(a, tokensBeforeA)).sort()).toEqual([...tokens.a].sort());
      expect((await tokenRows(b, tokensBeforeB)).sort()).toEqual([...tokens.b].sort());

      // ---- the audit log, straight from the table ----
      const table = async (p: Peer, from: number, to: number) =>
        (
          await q<{ entry: string; type: string; outcome: string }>(
            p,
            `SELECT entry, type, outcome FROM audit_log WHERE idx >= ${from} AND idx < ${to} ORDER BY idx`,
          )
        ).map((row) => {
          const e = fromEntry(row.entry);
          expect([row.type, row.outcome]).toEqual([e.type, e.outcome]);
          return e;
        });
      const tableA = await table(a, startA, endA);
      const tableB = await table(b, startB, endB);
      checkCompleteness('A audit_log', tableA, expectedA);
      checkCompleteness('B audit_log', tableB, expectedB);

      // ---- the audit log, through GET /fhir/AuditEvent (system/AuditEvent.read) ----
      const api = async (p: Peer, auth: string, from: number, to: number) => {
        const out: Ev[] = [];
        for (let offset = 0; ; offset += 1000) {
          const res = await request(p.gw.app.server)
            .get(`/fhir/AuditEvent?_count=1000&_offset=${offset}`)
            .set('authorization', auth)
            .expect(200);
          const entries = (res.body.entry ?? []) as Array<{ resource: AuditEventResource }>;
          out.push(...entries.map((x) => fromAuditEvent(x.resource)));
          if (entries.length < 1000) break;
        }
        return out.filter((e) => e.idx >= from && e.idx < to).sort((x, y) => x.idx - y.idx);
      };
      const apiA = await api(a, auditA, startA, endA);
      const apiB = await api(b, auditB, startB, endB);
      checkCompleteness('A AuditEvent API', apiA, expectedA);
      checkCompleteness('B AuditEvent API', apiB, expectedB);
      expect(apiA).toEqual(tableA);
      expect(apiB).toEqual(tableB);

      // ---- the whole log verifies offline: evidence pack in-process, and `gateway audit verify <file>` ----
      for (const [p, auth, end] of [
        [a, auditA, endA],
        [b, auditB, endB],
      ] as const) {
        const res = await request(p.gw.app.server).get('/audit/export').set('authorization', auth).expect(200);
        const pack = res.body as { from: number; to: number; entries: string[] };
        expect(pack.from).toBe(0);
        expect(pack.to).toBeGreaterThanOrEqual(end);
        const report = await verifyEvidencePack(JSON.parse(JSON.stringify(pack)), nodeVerifyDeps);
        expect(report.problem).toBeUndefined();
        expect(report.ok).toBe(true);
        // The pack holds exactly the entries checked above.
        const fromPack = pack.entries.map(fromEntry).filter((e) => e.idx >= (p === a ? startA : startB) && e.idx < end);
        expect(fromPack).toEqual(p === a ? tableA : tableB);
        const file = join(dir, `${p === a ? 'a' : 'b'}.json`);
        writeFileSync(file, JSON.stringify(pack));
        if (p === a) {
          const out = await runCli(['audit', 'verify', file], cleanEnv({ DATA_DIR: join(dir, 'none') }));
          expect(out.stdout).toMatch(/^OK: /);
          expect(out.code).toBe(0);
        }
      }
    },
  );
});
