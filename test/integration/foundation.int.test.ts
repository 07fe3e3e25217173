import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

describe('foundation: a gateway on real PostgreSQL and a real SoftHSM token', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(async () => gw?.close());

  it('answers liveness and readiness', async () => {
    await request(gw.app.server).get('/health').expect(200, { status: 'ok' });
    const ready = await request(gw.app.server).get('/ready').expect(200);
    expect(ready.body.checks).toEqual({ database: 'ok', hsm: 'ok', queue: 'ok', validator: 'ok' });
  });

  it('publishes one signing and one encryption key of each kind, EC and post-quantum, with RFC 7638 kids', async () => {
    const res = await request(gw.app.server).get('/.well-known/jwks.json').expect(200);
    expect(res.headers['cache-control']).toMatch(/max-age=\d+/);
    const { calculateJwkThumbprint } = await import('jose');
    const keys = res.body.keys as Array<Record<string, string>>;
    expect(keys.map((k) => `${k.use}/${k.alg}`).sort()).toEqual([
      'enc/ECDH-ES',
      'enc/ML-KEM-768',
      'sig/ES256',
      'sig/ML-DSA-65',
    ]);
    for (const k of keys.filter((key) => key.kty === 'AKP')) {
      expect(k).not.toHaveProperty('priv');
      // RFC 9964: the thumbprint's required members of an AKP key are alg, kty and pub.
      const members = JSON.stringify({ alg: k.alg, kty: k.kty, pub: k.pub });
      expect(k.kid).toBe(createHash('sha256').update(members).digest('base64url'));
    }
    for (const k of keys.filter((key) => key.kty !== 'AKP')) {
      expect(k.kty).toBe('EC');
      expect(k.crv).toBe('P-256');
      expect(k).not.toHaveProperty('d');
      expect(k.kid).toBe(await calculateJwkThumbprint({ kty: k.kty, crv: k.crv, x: k.x, y: k.y }));
    }
  });

  it('serves a CapabilityStatement', async () => {
    const res = await request(gw.app.server).get('/fhir/metadata').expect(200);
    expect(res.headers['content-type']).toContain('application/fhir+json');
    expect(res.body).toMatchObject({ resourceType: 'CapabilityStatement', fhirVersion: '4.0.1' });
  });

  it('answers unknown routes with a 404 OperationOutcome', async () => {
    const res = await request(gw.app.server).get('/no/such/route').expect(404);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue[0].code).toBe('not-found');
  });

  it('serves the OpenAPI document and an interactive reference', async () => {
    const spec = await request(gw.app.server).get('/openapi.yaml').expect(200);
    expect(spec.text).toContain('openapi: 3.1.0');
    const docs = await request(gw.app.server).get('/docs/').expect(200);
    expect(docs.text.toLowerCase()).toContain('swagger');
  });

  it('keeps the private keys in the token as sensitive and never extractable', async () => {
    const keys = await gw.app.hsm.listKeys();
    expect(keys.length).toBeGreaterThanOrEqual(3);
    for (const k of keys) {
      expect(k).toMatchObject({ sensitive: true, extractable: false, alwaysSensitive: true, neverExtractable: true });
    }
  });
});
