import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { request as httpRequest, type ClientRequest, type IncomingHttpHeaders } from 'node:http';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { claimsFor, publishedEncKey, seal, signContent, softPartner } from '../helpers/envelopes.ts';
import { waitFor } from '../helpers/outbound.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  code: string | undefined;
}

/** A POST /inbox written by hand: `length` is the Content-Length (none: chunked); the caller writes the body. */
function open(url: string, length?: number): { req: ClientRequest; answer: Promise<Answer> } {
  const req = httpRequest(`${url}/inbox`, {
    method: 'POST',
    agent: false,
    headers: { 'content-type': 'application/jose', ...(length === undefined ? {} : { 'content-length': length }) },
  });
  const answer = new Promise<Answer>((resolve, reject) => {
    req.on('error', reject);
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        const code = res.headers['content-type']?.includes('json')
          ? (JSON.parse(body) as { issue: Array<{ details: { coding: Array<{ code: string }> } }> }).issue[0]?.details
              .coding[0]?.code
          : undefined;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, code });
      });
    });
  });
  return { req, answer };
}

/** Not a JWE (no dots): refused with 400 JWE_MALFORMED once read, by which time it held its share of the budget. */
const garbage = (n: number) => Buffer.alloc(n, 'a');

describe('POST /inbox: unauthenticated bodies share INBOX_BUFFER_BUDGET', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ INBOX_BUFFER_BUDGET: String(MiB) });
  });
  afterAll(async () => gw?.close());

  const held = () => gw.app.bodyBudget.held;
  const heldIs = (n: number) => waitFor(`${n} bytes held`, async () => (held() === n ? true : undefined), 10_000);

  it('answers a body that does not fit 503 with Retry-After before reading it, audited as a refusal; the client sees the answer', async () => {
    const { req, answer } = open(gw.url, 30 * MiB);
    req.end(garbage(30 * MiB)); // written whole: the answer must still reach the client (no reset while it writes)
    const a = await answer;
    expect(a.status).toBe(503);
    expect(a.code).toBe('UNAVAILABLE');
    expect(a.headers['retry-after']).toBe('5');
    expect(a.headers['content-type']).toMatch(/^application\/fhir\+json/);
    await heldIs(0);
    // And as a sending gateway posts (fetch):
    const res = await fetch(`${gw.url}/inbox`, {
      method: 'POST',
      headers: { 'content-type': 'application/jose' },
      body: garbage(30 * MiB),
    });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('5');
    await res.arrayBuffer();
    await heldIs(0);
    const { rows } = await gw.app.ctx.pool.query<{ entry: string }>(
      `SELECT entry FROM audit_log WHERE type = 'inbox.refused' AND entry::jsonb #>> '{detail,reason}' = 'UNAVAILABLE'`,
    );
    expect(rows).toHaveLength(2);
    const entry = JSON.parse(rows[0]!.entry) as { outcome: string; agent: { type: string }; detail: unknown };
    expect(entry).toMatchObject({
      outcome: 'minor-failure',
      agent: { type: 'anonymous' },
      detail: { reason: 'UNAVAILABLE', status: 503 },
    });
  });

  it('holds each reservation while its body is read, and gives it back on success, on refusal and on an aborted connection', async () => {
    // A slow body holds 700 KiB of the 1 MiB budget: the next 700 KiB body does not fit.
    const slow = open(gw.url, 700 * KiB);
    slow.req.write(garbage(100 * KiB));
    await heldIs(700 * KiB);
    const second = open(gw.url, 700 * KiB);
    second.req.end(garbage(700 * KiB));
    expect((await second.answer).status).toBe(503);
    expect(held()).toBe(700 * KiB);
    // The slow body ends and is refused (not a JWE): its reservation is given back.
    slow.req.end(garbage(600 * KiB));
    expect(await slow.answer).toMatchObject({ status: 400, code: 'JWE_MALFORMED' });
    await heldIs(0);

    // An aborted upload gives its reservation back too.
    const aborted = open(gw.url, 700 * KiB);
    aborted.answer.catch(() => undefined);
    aborted.req.write(garbage(100 * KiB));
    await heldIs(700 * KiB);
    aborted.req.destroy();
    await heldIs(0);

    // An accepted delivery, and the budget is whole again.
    const partner = await softPartner(`https://budget-${randomUUID()}.test`);
    await gw.app.ctx.directory.add({ id: partner.id, endpoint: `${partner.id}/inbox`, jwks: partner.jwks });
    const bundle = { resourceType: 'Bundle', type: 'collection', entry: [{ resource: { resourceType: 'Basic' } }] };
    const envelope = seal(
      await publishedEncKey(gw.url),
      await signContent(partner, claimsFor(partner, gw.config.org, bundle)),
    );
    const ok = open(gw.url, Buffer.byteLength(envelope));
    ok.req.end(envelope);
    expect((await ok.answer).status).toBe(200);
    await heldIs(0);
  });

  it('counts a chunked body as it arrives: past the budget it is cut with 503, and the connection closed', async () => {
    const small = open(gw.url);
    small.req.end(garbage(10 * KiB));
    expect(await small.answer).toMatchObject({ status: 400, code: 'JWE_MALFORMED' });
    const big = open(gw.url);
    big.req.write(garbage(MiB + 64 * KiB)); // and wait for the answer without ending the body
    const a = await big.answer;
    expect(a).toMatchObject({ status: 503, code: 'UNAVAILABLE' });
    expect(a.headers.connection).toBe('close');
    big.req.destroy();
    await heldIs(0);
  });
});

describe('POST /inbox under sixteen concurrent 30 MiB posts (default INBOX_BUFFER_BUDGET, 64 MiB)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(async () => gw?.close());

  it(
    'admits what fits in the budget, answers the rest 503 before reading them, and keeps RSS growth within a small multiple of the budget',
    { timeout: 120_000 },
    async () => {
      const body = garbage(30 * MiB); // one buffer for every client: the test's own memory stays flat
      global.gc?.();
      const base = process.memoryUsage().rss;
      let peak = base;
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
      let answers: Answer[];
      try {
        answers = await Promise.all(
          Array.from({ length: 16 }, () => {
            const { req, answer } = open(gw.url, body.length);
            req.end(body);
            return answer;
          }),
        );
      } finally {
        clearInterval(sampler);
      }
      const statuses = answers.map((a) => a.status).sort();
      // Two 30 MiB bodies fit in 64 MiB; every other post is answered (no reset) with 503.
      expect(statuses.filter((s) => s === 400).length).toBeLessThanOrEqual(2);
      expect(statuses.filter((s) => s === 503).length).toBeGreaterThanOrEqual(14);
      expect(statuses.every((s) => s === 400 || s === 503)).toBe(true);
      const growth = (peak - base) / MiB;
      // Each admitted body is held as bytes, then as text, while it is opened: a small multiple of the budget.
      // Buffered without a bound, the sixteen bodies grew RSS by several hundred MiB.
      expect(growth, `RSS grew by ${Math.round(growth)} MiB`).toBeLessThan(3 * 64);
      await waitFor('the budget given back', async () => (gw.app.bodyBudget.held === 0 ? true : undefined), 10_000);
    },
  );
});
