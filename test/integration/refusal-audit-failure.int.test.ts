import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

/**
 * One failure policy for refusal audits: when the audit write fails, the
 * refusal still stands. The write is made to fail by the database itself: a
 * trigger in this test's own database raises on every inbox.refused entry.
 */
describe('a refusal whose audit write fails', () => {
  let gw: TestGateway;
  const lines: string[] = [];
  beforeAll(async () => {
    gw = await startTestGateway(
      {},
      { logger: { level: 'error', stream: { write: (s: string) => void lines.push(s) } } },
    );
    await gw.app.ctx.pool.query(`
      CREATE FUNCTION zz_refuse_refusal_audit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'audit of % is failing on purpose', NEW.type; END $$;
      CREATE TRIGGER zz_refuse_refusal_audit BEFORE INSERT ON audit_log FOR EACH ROW
        WHEN (NEW.type = 'inbox.refused') EXECUTE FUNCTION zz_refuse_refusal_audit();
    `);
  });
  afterAll(async () => gw?.close());

  const codeOf = (body: { issue: Array<{ details: { coding: Array<{ code: string }> } }> }) =>
    body.issue[0]?.details.coding[0]?.code;
  const auditFailureLogged = () =>
    lines.filter((l) => l.includes('could not record a refusal') && l.includes('"level":50')).length;

  it.each([
    ['a bundle the pipeline refuses (POST /inbox)', '/inbox', 'application/jose', 'not.a.jwe', 400, 'JWE_MALFORMED'],
    ['a bundle refused at the edge (POST /inbox)', '/inbox', 'text/plain', 'hello', 415, 'UNSUPPORTED_MEDIA_TYPE'],
    [
      'an imaging delivery the pipeline refuses (POST /inbox/imaging)',
      '/inbox/imaging',
      'multipart/related; type="application/jose"; boundary=bnd',
      '--bnd\r\nContent-Type: application/jose\r\n\r\nnot-a-jws\r\n--bnd--\r\n',
      400,
      'JWS_MALFORMED',
    ],
    [
      'an imaging delivery refused at the edge (POST /inbox/imaging)',
      '/inbox/imaging',
      'application/jose',
      'x',
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    ],
  ])(
    '%s: still answers its 4xx OperationOutcome, not a 500, and logs the lost audit',
    async (_, path, type, body, status, code) => {
      const before = auditFailureLogged();
      const res = await request(gw.app.server).post(path).set('content-type', type).send(body);
      expect(res.status).toBe(status);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(codeOf(res.body)).toBe(code);
      expect(auditFailureLogged()).toBe(before + 1);
      const { rows } = await gw.app.ctx.pool.query(
        `SELECT count(*)::int AS n FROM audit_log WHERE type = 'inbox.refused'`,
      );
      expect(rows[0].n).toBe(0);
    },
  );
});
