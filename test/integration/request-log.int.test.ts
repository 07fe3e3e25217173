import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface LogLine {
  reqId?: string;
  req?: { url?: string };
  msg?: string;
}

describe('request logging: a bounded request id, and no credentials in logged URLs', () => {
  let gw: TestGateway;
  const lines: string[] = [];
  /** The parsed log lines written since `from`. */
  const logged = (from: number): LogLine[] => lines.slice(from).map((l) => JSON.parse(l) as LogLine);

  beforeAll(async () => {
    // The gateway's own logger options (level, redactions, serializers), writing into `lines`.
    gw = await startTestGateway(
      { LOG_LEVEL: 'info' },
      { logger: undefined, logStream: { write: (line: string) => void lines.push(line) } },
    );
  });
  afterAll(async () => gw?.close());

  it('uses a safe X-Request-Id as the request id of every line of that request', async () => {
    const from = lines.length;
    const res = await fetch(`${gw.url}/health`, { headers: { 'x-request-id': 'ehr-42.batch:7_A-z' } });
    expect(res.status).toBeLessThan(500);
    const mine = logged(from).filter((l) => l.reqId !== undefined);
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.every((l) => l.reqId === 'ehr-42.batch:7_A-z')).toBe(true);
  });

  for (const [what, value] of [
    ['CR LF (a forged log line)', 'abc\r\n{"level":60,"msg":"forged"}'],
    ['a NUL', 'abc\u0000def'],
    ['129 characters', 'r'.repeat(129)],
    ['a space', 'abc def'],
    ['markup', '<script>alert(1)</script>'],
    ['quotes', '"abc"'],
  ]) {
    it(`replaces an X-Request-Id with ${what} by a fresh UUID, and never logs it`, async () => {
      const from = lines.length;
      // inject: the HTTP parser would already refuse CR, LF and NUL in a header; the rule must not depend on it.
      const res = await gw.app.inject({ method: 'GET', url: '/health', headers: { 'x-request-id': value! } });
      expect(res.statusCode).toBeLessThan(500);
      const mine = logged(from).filter((l) => l.reqId !== undefined);
      expect(mine.length).toBeGreaterThan(0);
      for (const l of mine) expect(l.reqId).toMatch(UUID);
      expect(lines.slice(from).join('\n')).not.toContain(value!.slice(0, 12));
    });
  }

  it('gives each request without X-Request-Id its own UUID', async () => {
    const from = lines.length;
    await fetch(`${gw.url}/health`);
    await fetch(`${gw.url}/health`);
    const ids = new Set(logged(from).map((l) => l.reqId));
    expect(ids.size).toBe(2);
    for (const id of ids) expect(id).toMatch(UUID);
  });

  it('logs request URLs with the values of access_token, code and client_assertion cut', async () => {
    const from = lines.length;
    const query =
      'access_token=SECRET-TOKEN-1&state=kept-value&code=SECRET-CODE-2&client_assertion=eyJSECRET3&access%5Ftoken=SECRET-4&ACCESS_TOKEN=SECRET-5';
    const res = await fetch(`${gw.url}/inbox/messages?${query}`);
    expect(res.status).toBe(401);
    const text = lines.slice(from).join('\n');
    for (const secret of ['SECRET-TOKEN-1', 'SECRET-CODE-2', 'eyJSECRET3', 'SECRET-4', 'SECRET-5'])
      expect(text).not.toContain(secret);
    const urls = logged(from)
      .map((l) => l.req?.url)
      .filter((u): u is string => typeof u === 'string');
    expect(urls.length).toBeGreaterThan(0);
    expect(urls[0]).toBe(
      '/inbox/messages?access_token=[REDACTED]&state=kept-value&code=[REDACTED]&client_assertion=[REDACTED]&access%5Ftoken=[REDACTED]&ACCESS_TOKEN=[REDACTED]',
    );
  });

  it('cuts a patient identifier from a logged AuditEvent search URL, however its name is encoded', async () => {
    const from = lines.length;
    const ssn = encodeURIComponent('http://hl7.org/fhir/sid/us-ssn|999-12-3456');
    const res = await fetch(`${gw.url}/fhir/AuditEvent?patient.identifier=${ssn}&patient%2Eidentifier=${ssn}&_count=5`);
    expect(res.status).toBe(401);
    const urls = logged(from)
      .map((l) => l.req?.url)
      .filter((u): u is string => typeof u === 'string');
    expect(urls[0]).toBe('/fhir/AuditEvent?patient.identifier=[REDACTED]&patient%2Eidentifier=[REDACTED]&_count=5');
    expect(lines.slice(from).join('\n')).not.toContain('999-12-3456');
  });
});
