import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { flattenedVerify, importJWK, type JWK } from 'jose';
import { startTwoGateways, type Peer, type TwoGateways } from '../helpers/two-gateways.ts';
import { orderMessage, responseMessageTo, waitFor } from '../helpers/outbound.ts';
import { claimsFor, publishedEncKey, seal, signContent, softPartner, type SoftPartner } from '../helpers/envelopes.ts';
import { freePort } from '../helpers/ports.ts';
import { DICOM_FIXTURES } from '../helpers/imaging.ts';
import { readFileSync } from 'node:fs';
import { r4Errors } from '../helpers/r4-validator.ts';
import { verifyReceipt } from '../../src/protocol/receipt.ts';
import { signProcessedReceipt } from '../../src/protocol/processed-receipt.ts';
import { PROTOCOL } from '../../src/protocol/wire.ts';

/**
 * Response messages and processed receipts between two real gateways: A's
 * EHR sends a message to B; B's EHR answers it with a FHIR response message
 * (MessageHeader.response), which B routes back to A correlated to A's
 * exchange; B's $ack (or an accepted forward to B's local EHR) sends A a
 * second signed receipt, `processed`.
 */
type Outcome = { issue: Array<{ details: { coding: Array<{ code: string }> }; expression?: string[] }> };
const codeOf = (body: Outcome) => body.issue[0]!.details.coding[0]!.code;

interface RecipientView {
  delivery: string;
  partner: string;
  state: string;
  envelope_digest: string;
  receipt: string | null;
  processed_at: string | null;
  processed_receipt: string | null;
  processed_via: string | null;
  responses: Array<{ message: string; code: string; received_at: string }>;
  events: Array<{ kind: string; at: string }>;
}

const text = (r: request.Test) =>
  r.buffer(true).parse((res, cb) => {
    let data = '';
    res.setEncoding('utf8');
    res.on('data', (c: string) => (data += c));
    res.on('end', () => cb(null, data));
  });

async function send(p: Peer, body: string): Promise<request.Response> {
  return request(p.gw.app.server)
    .post('/fhir/$process-message')
    .set({ authorization: await p.ehr.bearer(), 'content-type': 'application/fhir+json' })
    .send(body);
}

async function view(p: Peer, exchange: string): Promise<{ recipients: RecipientView[] }> {
  const res = await request(p.gw.app.server)
    .get(`/exchanges/${exchange}`)
    .set('authorization', await p.ehr.bearer());
  expect(res.status).toBe(200);
  return res.body;
}

/** The one recipient's view once `pred` holds. */
function recipientWhen(p: Peer, exchange: string, what: string, pred: (r: RecipientView) => boolean) {
  return waitFor(
    what,
    async () => {
      const r = (await view(p, exchange)).recipients[0]!;
      return pred(r) ? r : undefined;
    },
    30_000,
    100,
  );
}

/** The inbox message at `p` that holds delivery `delivery`. */
async function inboxMessage(p: Peer, delivery: string) {
  return waitFor(`inbox message of delivery ${delivery}`, async () => {
    const res = await request(p.gw.app.server)
      .get('/inbox/messages?_count=1000')
      .set('authorization', await p.ehr.bearer());
    return (res.body.messages as Array<Record<string, unknown> & { id: string; delivery: string }>).find(
      (m) => m.delivery === delivery,
    );
  });
}

async function jwksOf(p: Peer) {
  return (await (await fetch(`${p.gw.url}/.well-known/jwks.json`)).json()) as { keys: Array<JWK & { kid: string }> };
}

const auditTypes = async (p: Peer, like: string) =>
  (
    await p.gw.app.ctx.pool.query<{ type: string; entry: string }>(
      `SELECT type, entry FROM audit_log WHERE entry LIKE $1 ORDER BY idx`,
      [`%${like}%`],
    )
  ).rows;

/** The claims of a JWS in either form (compact, or the JSON serialization of protocol v2), unverified. */
const payloadOf = (jws: string): Record<string, unknown> =>
  JSON.parse(
    Buffer.from(
      jws.startsWith('{') ? (JSON.parse(jws) as { payload: string }).payload : jws.split('.')[1]!,
      'base64url',
    ).toString(),
  ) as Record<string, unknown>;

describe('response messages and processed receipts: B answers A, and its $ack is a signed processed receipt', () => {
  let t: TwoGateways;
  let soft: SoftPartner;
  beforeAll(async () => {
    t = await startTwoGateways({ DELIVERY_MAX_ATTEMPTS: '3' });
    // A partner of A's with software keys, to forge answers about deliveries that were never sent to it.
    soft = await softPartner(`urn:test:soft-${randomUUID().slice(0, 8)}`);
    await t.a.gw.app.ctx.directory.add({ id: soft.id, endpoint: 'http://127.0.0.1:9/soft-inbox', jwks: soft.jwks });
    await t.b.gw.app.ctx.directory.add({ id: soft.id, endpoint: 'http://127.0.0.1:9/soft-inbox', jwks: soft.jwks });
  }, 60_000);
  afterAll(async () => t?.close());

  let exchange: string;
  let sent: RecipientView;
  let atB: { id: string };
  const headerId = randomUUID();

  it("A's message reaches B, whose EHR acknowledges it: A's view shows delivered, then processed, both receipts verified", async () => {
    const { a, b } = t;
    const res = await send(a, orderMessage(b.gw.config.org, headerId));
    expect(res.status).toBe(202);
    exchange = (res.headers.location as string).split('/').pop()!;
    sent = await recipientWhen(a, exchange, 'delivered', (r) => r.state === 'delivered');
    expect(sent.processed_at).toBeNull();
    atB = await inboxMessage(b, sent.delivery);

    await request(b.gw.app.server)
      .post(`/inbox/messages/${atB.id}/$ack`)
      .set('authorization', await b.ehr.bearer())
      .expect(200);
    const processed = await recipientWhen(a, exchange, 'processed', (r) => r.processed_at !== null);
    expect(processed.events.map((e) => e.kind)).toEqual(['delivered', 'processed']);
    expect(processed.processed_via).toBe('acknowledged');

    // Both receipts verify against B's published keys, and each binds the envelope A sent.
    const jwks = await jwksOf(b);
    const key = async (h: { kid?: string; alg?: string }) =>
      importJWK(
        jwks.keys.find((k) => k.kid === h.kid)!,
        h.alg,
      );
    const transport = await verifyReceipt(processed.receipt!, key, {
      iss: b.gw.config.org,
      aud: a.gw.config.org,
      delivery: processed.delivery,
      digest: processed.envelope_digest,
    });
    // Protocol v2 (both publish post-quantum keys): the processed receipt is dual-signed as well, each
    // signature of its own typ and verified with B's published key of its alg.
    const dual = JSON.parse(processed.processed_receipt!) as {
      payload: string;
      signatures: Array<{ protected: string; signature: string }>;
    };
    expect(dual.signatures).toHaveLength(2);
    let payload: Uint8Array = new Uint8Array();
    for (const one of dual.signatures) {
      const h = JSON.parse(Buffer.from(one.protected, 'base64url').toString()) as { alg: string; typ: string };
      expect(h.typ).toBe(PROTOCOL.processedTyp);
      ({ payload } = await flattenedVerify({ payload: dual.payload, ...one }, await key(h)));
    }
    const claims = JSON.parse(Buffer.from(payload).toString('utf8'));
    expect(claims).toMatchObject({
      iss: b.gw.config.org,
      aud: a.gw.config.org,
      exchange,
      delivery: processed.delivery,
      digest: processed.envelope_digest,
      receipt: transport.jti,
      status: 'processed',
      via: 'acknowledged',
    });
    // The transport receipt's verifier refuses the processed receipt: their typs differ.
    await expect(
      verifyReceipt(processed.processed_receipt!, key, {
        iss: b.gw.config.org,
        aud: a.gw.config.org,
        delivery: processed.delivery,
        digest: processed.envelope_digest,
      }),
    ).rejects.toThrow();
    expect(new Date(claims.processed_at * 1000).toISOString()).toBe(processed.processed_at);
    // A compact processed receipt for this v2 delivery, validly signed by B's ES256 key alone: a downgrade, refused.
    const { status: _status, ...input } = claims;
    const compact = await signProcessedReceipt(b.gw.app.ctx.keyring.signer(), { ...input, jti: randomUUID() });
    const downgraded = await fetch(`${a.gw.url}${PROTOCOL.inboxPath}${PROTOCOL.processedSuffix}`, {
      method: 'POST',
      headers: { 'content-type': PROTOCOL.mediaType },
      body: compact,
    });
    expect(downgraded.status).toBe(400);
    expect(JSON.stringify(await downgraded.json())).toContain('PROTOCOL_DOWNGRADE');

    // B sent it once; both sides audited it.
    const { rows } = await b.gw.app.ctx.pool.query(
      'SELECT state, attempts FROM processed_receipts WHERE message_id = $1',
      [atB.id],
    );
    expect(rows).toEqual([{ state: 'sent', attempts: 1 }]);
    expect((await auditTypes(b, atB.id)).map((x) => x.type)).toEqual(
      expect.arrayContaining(['inbox.acknowledged', 'inbox.processed', 'processed-receipt.attempt']),
    );
    expect((await auditTypes(a, claims.jti)).map((x) => x.type)).toEqual(['delivery.processed']);

    // The Task says so too, as valid R4.
    const task = await request(a.gw.app.server)
      .get(`/fhir/Task/${exchange}`)
      .set('authorization', await a.ehr.bearer())
      .expect(200);
    expect(task.body.businessStatus.text).toBe('1 delivered, 1 processed');
    expect(task.body.output.map((o: { type: { coding: Array<{ code: string }> } }) => o.type.coding[0]!.code)).toEqual([
      'delivered',
      'processed',
    ]);
    expect(r4Errors(task.body)).toEqual([]);
  });

  it('an imaging delivery is processed too: its processed receipt binds the manifest envelope', async () => {
    const { a, b } = t;
    const sentStudy = await request(a.gw.app.server)
      .post(`/imaging?recipient=${encodeURIComponent(b.gw.config.org)}`)
      .set({ authorization: await a.ehr.bearer(), 'content-type': 'application/dicom' })
      .send(readFileSync(DICOM_FIXTURES[0]!));
    expect(sentStudy.status).toBe(202);
    const location = sentStudy.headers['content-location'] as string;
    const study = async () =>
      (
        await request(a.gw.app.server)
          .get(location)
          .set('authorization', await a.ehr.bearer())
      ).body.recipients[0] as RecipientView & { manifest_digest: string };
    const delivered = await waitFor('the study delivered', async () => {
      const r = await study();
      return r.state === 'delivered' ? r : undefined;
    });
    const message = await inboxMessage(b, delivered.delivery);
    await request(b.gw.app.server)
      .post(`/inbox/messages/${message.id}/$ack`)
      .set('authorization', await b.ehr.bearer())
      .expect(200);
    const processed = await waitFor('the study processed', async () => {
      const r = await study();
      return r.processed_at ? r : undefined;
    });
    expect(processed.events.map((e) => e.kind)).toEqual(['delivered', 'processed']);
    const claims = payloadOf(processed.processed_receipt!);
    expect(claims).toMatchObject({
      delivery: delivered.delivery,
      digest: delivered.manifest_digest,
      via: 'acknowledged',
    });
  });

  it('a repeated processed receipt is accepted once: 204 again, nothing new stored or audited', async () => {
    const { a } = t;
    const before = await view(a, exchange);
    const jws = before.recipients[0]!.processed_receipt!;
    const jti = payloadOf(jws).jti as string;
    const again = await fetch(`${a.gw.url}/inbox/processed`, {
      method: 'POST',
      headers: { 'content-type': 'application/jose' },
      body: jws,
    });
    expect(again.status).toBe(204);
    expect((await view(a, exchange)).recipients[0]).toEqual(before.recipients[0]);
    expect((await auditTypes(a, jti)).map((x) => x.type)).toEqual(['delivery.processed']);
  });

  it("B's EHR answers with a response message: it reaches A's inbox correlated to the exchange, and A's view and Task name it", async () => {
    const { a, b } = t;
    const answer = responseMessageTo(headerId, 'ok');
    const res = await send(b, answer);
    expect(res.status).toBe(202);
    const back = (res.headers.location as string).split('/').pop()!;
    const backView = await recipientWhen(b, back, 'the response delivered', (r) => r.state === 'delivered');
    expect(backView.partner).toBe(a.gw.config.org);

    const withResponse = await recipientWhen(a, exchange, 'the response', (r) => r.responses.length > 0);
    expect(withResponse.events.map((e) => e.kind)).toEqual(['delivered', 'processed', 'response-received']);
    const [response] = withResponse.responses;
    expect(response!.code).toBe('ok');

    // A's EHR finds it in its inbox as a normal received message, naming the exchange it answers.
    const listed = await inboxMessage(a, backView.delivery);
    expect(listed).toMatchObject({
      id: response!.message,
      sender: b.gw.config.org,
      respondsTo: { exchange, delivery: sent.delivery, code: 'ok' },
    });
    const pulled = await text(
      request(a.gw.app.server)
        .get(`/inbox/messages/${response!.message}`)
        .set('authorization', await a.ehr.bearer()),
    ).expect(200);
    expect(pulled.body).toBe(answer);

    const task = await request(a.gw.app.server)
      .get(`/fhir/Task/${exchange}`)
      .set('authorization', await a.ehr.bearer())
      .expect(200);
    expect(task.body.output.at(-1)).toEqual({
      type: {
        coding: [{ system: 'http://hl7.org/fhir/response-code', code: 'ok' }],
        text: `response to delivery ${sent.delivery} from ${b.gw.config.org}`,
      },
      valueReference: { reference: `${a.gw.config.baseUrl}/inbox/messages/${response!.message}`, type: 'Bundle' },
    });
    expect(r4Errors(task.body)).toEqual([]);
    expect((await auditTypes(a, response!.message)).map((x) => x.type)).toEqual(
      expect.arrayContaining(['inbox.accepted', 'delivery.response', 'inbox.read']),
    );

    // A's EHR acknowledges the response: B's view of it turns processed in turn.
    await request(a.gw.app.server)
      .post(`/inbox/messages/${response!.message}/$ack`)
      .set('authorization', await a.ehr.bearer())
      .expect(200);
    const answered = await recipientWhen(b, back, 'the response processed', (r) => r.processed_at !== null);
    expect(answered.events.map((e) => e.kind)).toEqual(['delivered', 'processed']);
  });

  it('a response to no message B received is an ordinary message: without a destination it cannot go anywhere (400, audited)', async () => {
    const { b } = t;
    const before = await b.gw.app.ctx.pool.query(
      `SELECT count(*)::int AS n FROM audit_log WHERE type = 'intake.refused' AND entry LIKE '%BAD_REQUEST%'`,
    );
    const res = await send(b, responseMessageTo(randomUUID(), 'fatal-error'));
    expect(res.status).toBe(400);
    expect(codeOf(res.body)).toBe('BAD_REQUEST');
    expect(res.body.issue[0].expression).toEqual(['Bundle.entry[0].resource.destination']);
    expect(res.body.issue[0].diagnostics).toMatch(/response\.identifier names no message this client received/);
    const after = await b.gw.app.ctx.pool.query(
      `SELECT count(*)::int AS n FROM audit_log WHERE type = 'intake.refused' AND entry LIKE '%BAD_REQUEST%'`,
    );
    expect(after.rows[0].n).toBe(before.rows[0].n + 1);
    // Sent through POST /exchanges, a response still goes only where its message came from.
    const elsewhere = await request(b.gw.app.server)
      .post(`/exchanges?recipient=${encodeURIComponent(soft.id)}`)
      .set({ authorization: await b.ehr.bearer(), 'content-type': 'application/fhir+json' })
      .send(responseMessageTo(headerId, 'ok'));
    expect(elsewhere.status).toBe(422);
    expect(codeOf(elsewhere.body)).toBe('UNPROCESSABLE');
    expect(elsewhere.body.issue[0].expression).toEqual(['recipient']);
  });

  it('A refuses a response that names a message A never sent to that partner (422 RESPONSE_UNMATCHED, audited)', async () => {
    const { a } = t;
    // The soft partner claims to answer A's delivery to B: it never got it.
    const claims = {
      ...claimsFor(soft, a.gw.config.org, JSON.parse(responseMessageTo(headerId, 'ok'))),
      response_to: sent.delivery,
      response_exchange: exchange,
    };
    const res = await fetch(`${a.gw.url}/inbox`, {
      method: 'POST',
      headers: { 'content-type': 'application/jose' },
      body: seal(await publishedEncKey(a.gw.url), await signContent(soft, claims)),
    });
    expect(res.status).toBe(422);
    expect(codeOf((await res.json()) as Outcome)).toBe('RESPONSE_UNMATCHED');
    const refused = await auditTypes(a, claims.jti);
    expect(refused.map((x) => x.type)).toEqual(['inbox.refused']);
    expect(JSON.parse(refused[0]!.entry).detail).toMatchObject({ reason: 'RESPONSE_UNMATCHED', status: 422 });
    expect(
      (await a.gw.app.ctx.pool.query('SELECT count(*)::int AS n FROM inbox_messages WHERE jti = $1', [claims.jti]))
        .rows[0].n,
    ).toBe(0);
    expect((await view(a, exchange)).recipients[0]!.responses).toHaveLength(1);
  });

  it('A refuses forged, mismatched and mistyped processed receipts, each with a 4xx OperationOutcome, audited', async () => {
    const { a } = t;
    const post = (body: string, type = 'application/jose') =>
      fetch(`${a.gw.url}/inbox/processed`, { method: 'POST', headers: { 'content-type': type }, body });
    const count = async () =>
      (
        await a.gw.app.ctx.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM audit_log WHERE type = 'processed-receipt.refused'`,
        )
      ).rows[0]!.n;
    const before = await count();

    const garbage = await post('not.a.jws');
    expect(garbage.status).toBe(400);
    expect(codeOf((await garbage.json()) as Outcome)).toBe('JWS_MALFORMED');

    const mistyped = await post('{}', 'application/json');
    expect(mistyped.status).toBe(415);

    // Signed by a real partner (the soft one), for a delivery A sent to B, not to it.
    const now = Math.floor(Date.now() / 1000);
    const forged = await signContent(
      soft,
      {
        iss: soft.id,
        aud: a.gw.config.org,
        iat: now,
        jti: randomUUID(),
        exchange,
        delivery: sent.delivery,
        digest: sent.envelope_digest,
        receipt: randomUUID(),
        status: 'processed',
        processed_at: now,
        via: 'acknowledged',
      },
      { typ: PROTOCOL.processedTyp },
    );
    const mismatch = await post(forged);
    expect(mismatch.status).toBe(400);
    const outcome = (await mismatch.json()) as Outcome;
    expect(codeOf(outcome)).toBe('RECEIPT_MISMATCH');
    expect(outcome.issue[0]!.expression).toEqual(['receipt.delivery']);

    // A processed receipt under the transport receipt's typ is not one.
    const wrongTyp = await signContent(soft, { iss: soft.id }, { typ: PROTOCOL.receiptTyp });
    expect((await post(wrongTyp)).status).toBe(400);

    expect(await count()).toBe(before + 4);
    expect((await view(a, exchange)).recipients[0]!.processed_via).toBe('acknowledged');
  });

  it('an answer about a delivery A has not settled comes early (503 with Retry-After, not a refusal); once given up, a processed receipt still binds it', async () => {
    const { a } = t;
    const askedId = randomUUID();
    const res = await send(a, orderMessage(soft.id, askedId));
    expect(res.status).toBe(202);
    const unsettled = (res.headers.location as string).split('/').pop()!;
    const pending = (await view(a, unsettled)).recipients[0]!;
    expect(pending.state).toBe('pending');

    // A response from the soft partner to that delivery: naming another MessageHeader.id it is refused; naming
    // the right one it is early.
    const respond = async (answers: string) => {
      const claims = {
        ...claimsFor(soft, a.gw.config.org, JSON.parse(responseMessageTo(answers, 'ok'))),
        response_to: pending.delivery,
        response_exchange: unsettled,
      };
      return fetch(`${a.gw.url}/inbox`, {
        method: 'POST',
        headers: { 'content-type': 'application/jose' },
        body: seal(await publishedEncKey(a.gw.url), await signContent(soft, claims)),
      });
    };
    const misnamed = await respond(randomUUID());
    expect(misnamed.status).toBe(422);
    const outcome = (await misnamed.json()) as Outcome;
    expect(codeOf(outcome)).toBe('RESPONSE_UNMATCHED');
    expect(outcome.issue[0]!.expression).toEqual(['content.entry[0].resource.response.identifier']);
    const earlyResponse = await respond(askedId);
    expect(earlyResponse.status).toBe(503);
    expect(earlyResponse.headers.get('retry-after')).toBe('1');
    const now = Math.floor(Date.now() / 1000);
    const processed = await signContent(
      soft,
      {
        iss: soft.id,
        aud: a.gw.config.org,
        iat: now,
        jti: randomUUID(),
        exchange: unsettled,
        delivery: pending.delivery,
        digest: pending.envelope_digest,
        receipt: randomUUID(),
        status: 'processed',
        processed_at: now,
        via: 'forwarded',
      },
      { typ: PROTOCOL.processedTyp },
    );
    const post = () =>
      fetch(`${a.gw.url}/inbox/processed`, {
        method: 'POST',
        headers: { 'content-type': 'application/jose' },
        body: processed,
      });
    const refusals = async () =>
      (
        await a.gw.app.ctx.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM audit_log WHERE type = 'processed-receipt.refused'`,
        )
      ).rows[0]!.n;
    const refusedBefore = await refusals();
    const early = await post();
    expect(early.status).toBe(503);
    expect(early.headers.get('retry-after')).toBe('1');
    expect(await refusals()).toBe(refusedBefore);

    const failed = await recipientWhen(a, unsettled, 'the delivery to fail', (r) => r.state === 'failed');
    expect(failed.events.map((e) => e.kind)).toEqual(['failed']);
    expect((await post()).status).toBe(204);
    const after = (await view(a, unsettled)).recipients[0]!;
    expect(after).toMatchObject({ state: 'failed', processed_via: 'forwarded', processed_receipt: processed });
    expect(after.events.map((e) => e.kind)).toEqual(['failed', 'processed']);
  });
});

describe("B's local EHR answers a forward with a response message: it goes back to A, and the forward is B's processed receipt", () => {
  let t: TwoGateways;
  let ehr: Server;
  const forwarded: Array<{ path: string; body: string }> = [];

  beforeAll(async () => {
    // A small FHIR server for B's EHR: $process-message answers a message with a response naming it.
    const port = await freePort();
    ehr = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        forwarded.push({ path: req.url!, body });
        const header = (JSON.parse(body) as { entry: Array<{ resource: { id?: string } }> }).entry[0]!.resource;
        res
          .writeHead(200, { 'content-type': 'application/fhir+json' })
          .end(responseMessageTo(header.id!, 'transient-error'));
      });
    });
    await new Promise<void>((r) => ehr.listen(port, '127.0.0.1', r));
    t = await startTwoGateways({}, {}, { b: { LOCAL_FHIR_BASE_URL: `http://127.0.0.1:${port}/fhir` } });
  }, 60_000);
  afterAll(async () => {
    await t?.close();
    await new Promise((r) => ehr?.close(r));
  });

  it("the EHR's answer reaches A correlated to the exchange, and A's view shows delivered, processed (forwarded), response", async () => {
    const { a, b } = t;
    const headerId = randomUUID();
    const message = orderMessage(b.gw.config.org, headerId);
    const res = await send(a, message);
    expect(res.status).toBe(202);
    const exchange = (res.headers.location as string).split('/').pop()!;

    const done = await recipientWhen(
      a,
      exchange,
      'processed and answered',
      (r) => r.processed_at !== null && r.responses.length > 0,
    );
    expect(done.processed_via).toBe('forwarded');
    expect(done.events.map((e) => e.kind).sort()).toEqual(['delivered', 'processed', 'response-received']);
    expect(done.events[0]!.kind).toBe('delivered');
    expect(done.responses[0]!.code).toBe('transient-error');

    // B's EHR got the message byte for byte at $process-message, once.
    expect(forwarded.filter((f) => f.body === message).map((f) => f.path)).toEqual(['/fhir/$process-message']);

    // A's EHR reads the answer exactly as B's EHR wrote it, from its inbox.
    const pulled = await text(
      request(a.gw.app.server)
        .get(`/inbox/messages/${done.responses[0]!.message}`)
        .set('authorization', await a.ehr.bearer()),
    ).expect(200);
    expect(pulled.body).toBe(
      responseMessageTo(headerId, 'transient-error', JSON.parse(pulled.body).entry[0].resource.id),
    );

    // On B the answer was submitted as the local EHR's own exchange, sent to A with the correlation signed.
    // A stores the answer before B's worker has recorded A's receipt: wait for that record.
    const rows = await waitFor(
      "B's answer recorded as delivered",
      async () => {
        const { rows: r } = await b.gw.app.ctx.pool.query(
          `SELECT e.client_id, d.partner_id, d.state FROM exchanges e JOIN deliveries d ON d.exchange_id = e.id`,
        );
        return r.every((x) => x.state !== 'pending') ? r : undefined;
      },
      30_000,
      100,
    );
    expect(rows).toEqual([{ client_id: 'local-fhir', partner_id: a.gw.config.org, state: 'delivered' }]);
  });
});
