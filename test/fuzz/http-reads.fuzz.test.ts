import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SCOPE_ALL_READ, SCOPE_AUDIT_READ } from '../../src/auth/scopes.ts';
import { testClient } from '../helpers/auth.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { hostileString, rawBytes } from './arbitraries.ts';
import { fuzzAsync } from './harness.ts';
import { auditValue, inboxCursor } from './http-arbitraries.ts';
import { expectReady, pct, queryString, send, type Answer } from './http.ts';

const AUDIT_NAMES = ['date', 'type', 'subtype', 'outcome', 'entity', 'agent', '_count', '_offset', '_format'];

/**
 * The read routes' query parameters under hostile values, over HTTP (in
 * process): GET /fhir/AuditEvent and GET /inbox/messages answer 200 or a
 * 4xx OperationOutcome, and the gateway stays ready.
 */
describe('fuzz over HTTP: GET /fhir/AuditEvent and GET /inbox/messages', () => {
  let gw: TestGateway;
  let auth: string;
  beforeAll(async () => {
    gw = await startTestGateway({ RATE_LIMIT: '0' });
    const reader = await testClient(gw, { scopes: [SCOPE_AUDIT_READ, SCOPE_ALL_READ], receivesFrom: ['*'] });
    auth = await reader.bearer();
  });
  afterAll(async () => gw?.close());
  afterEach(async () => expectReady(gw.app));

  const get = (url: string) => send(gw.app, { method: 'GET', url, headers: { authorization: auth } });

  function judge(res: Answer, what: string) {
    expect(res.statusCode, `${what}: HTTP ${res.statusCode} ${res.body.slice(0, 300)}`).toBeLessThan(500);
    if (res.statusCode >= 400) expect(JSON.parse(res.body).resourceType, what).toBe('OperationOutcome');
    else expect(res.statusCode, what).toBe(200);
  }

  /** Name/value pairs for one query: known names with near-valid values, unknown names, raw bytes. */
  const auditPairs = fc.array(
    fc.oneof(
      { weight: 5, arbitrary: fc.constantFrom(...AUDIT_NAMES).chain((n) => auditValue(n).map((v) => [n, v])) },
      { weight: 1, arbitrary: fc.tuple(hostileString, hostileString) },
    ),
    { maxLength: 4 },
  ) as fc.Arbitrary<Array<[string, string]>>;

  it('AuditEvent search: any parameters, repeated or unknown, near-valid dates and codes', async () => {
    await fuzzAsync(
      fc.oneof(
        { weight: 6, arbitrary: auditPairs.map(queryString) },
        { weight: 1, arbitrary: rawBytes.map((b) => `?date=${pct(b)}`) },
      ),
      async (q) => judge(await get(`/fhir/AuditEvent${q}`), `AuditEvent${q}`),
      { numRuns: 300 },
    );
  });

  it('an impossible date (February 30, year 0) or a NUL in agent or entity is a 4xx, not a PostgreSQL error', async () => {
    for (const pairs of [
      [['date', '2026-02-30']],
      [['date', 'ge2026-04-31T10:00:00Z']],
      [['date', 'lt0000-07-03T01:17:04+00:00']],
      [['agent', 'ex-\0']],
      [['entity', 'exchange|\0']],
    ] as Array<Array<[string, string]>>)
      judge(await get(`/fhir/AuditEvent${queryString(pairs)}`), JSON.stringify(pairs));
  });

  it('inbox list: any cursor, sender, state and _count', async () => {
    const pairs = fc.array(
      fc.oneof(
        inboxCursor.map((v) => ['before', v]),
        hostileString.map((v) => ['sender', v]),
        fc.oneof(fc.constantFrom('received', 'forwarded', 'acknowledged'), hostileString).map((v) => ['state', v]),
        fc
          .oneof(fc.constantFrom('1', '1000', '0', '1001', '-1', '1.5', '1e3'), hostileString)
          .map((v) => ['_count', v]),
      ),
      { maxLength: 4 },
    ) as fc.Arbitrary<Array<[string, string]>>;
    await fuzzAsync(
      pairs.map(queryString),
      async (q) => judge(await get(`/inbox/messages${q}`), `inbox/messages${q}`),
      { numRuns: 300 },
    );
  });

  it('a cursor time before PostgreSQL timestamps begin, a cursor id that is no UUID, or a NUL in sender is a 4xx', async () => {
    for (const pairs of [
      [['before', '-271821-04-20T00:00:00.000Z_00000000-0000-0000-0000-000000000000']],
      [['before', `2026-01-01T00:00:00.000Z_${'-'.repeat(36)}`]],
      [['sender', '\0']],
    ] as Array<Array<[string, string]>>)
      judge(await get(`/inbox/messages${queryString(pairs)}`), JSON.stringify(pairs));
  });
});
