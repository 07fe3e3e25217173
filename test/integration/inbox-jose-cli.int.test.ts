import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { testClient } from '../helpers/auth.ts';
import { envelopeDigest } from '../../src/protocol/wire.ts';

/**
 * Interop: an envelope made entirely by Debian's `jose` CLI (latchset) — the
 * inner JWS signed with a registered test partner's software key, encrypted
 * to the gateway's published encryption key — is accepted, and the CLI
 * verifies the gateway's receipt.
 */
const JOSE = '/usr/bin/jose';
const jose = (args: string[], input?: string) => execFileSync(JOSE, args, { input, encoding: 'utf8' });

describe('POST /inbox accepts an envelope made by the jose CLI', () => {
  let gw: TestGateway;
  let dir: string;
  beforeAll(async () => {
    gw = await startTestGateway();
    dir = mkdtempSync(join(tmpdir(), 'jose-cli-'));
  });
  afterAll(async () => {
    await gw?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('CLI-signed, CLI-sealed bundle: 200, receipt verified by the CLI, bundle handed over', async () => {
    const f = (name: string) => join(dir, name);
    // The partner's keys, generated and held by the CLI.
    jose(['jwk', 'gen', '-i', '{"alg":"ES256"}', '-o', f('sig.jwk')]);
    const sigKid = jose(['jwk', 'thp', '-i', f('sig.jwk')]).trim();
    const sigPub = {
      ...JSON.parse(jose(['jwk', 'pub', '-i', f('sig.jwk')])),
      kid: sigKid,
      use: 'sig',
      alg: 'ES256',
      key_ops: undefined,
    };
    jose(['jwk', 'gen', '-i', '{"kty":"EC","crv":"P-256"}', '-o', f('enc.jwk')]);
    const encPub = {
      ...JSON.parse(jose(['jwk', 'pub', '-i', f('enc.jwk')])),
      kid: 'partner-enc',
      use: 'enc',
      alg: 'ECDH-ES',
    };
    const partnerId = 'https://cli-partner.test';
    await gw.app.ctx.directory.add({
      id: partnerId,
      endpoint: `${partnerId}/inbox`,
      jwks: { keys: [JSON.parse(JSON.stringify(sigPub)), encPub] },
    });

    // The gateway's published encryption key, as any partner would fetch it.
    const jwks = (await (await fetch(`${gw.url}/.well-known/jwks.json`)).json()) as {
      keys: Array<Record<string, string>>;
    };
    const ourEnc = jwks.keys.find((k) => k.use === 'enc')!;
    writeFileSync(f('recipient.jwk'), JSON.stringify(ourEnc));

    const bundle = {
      resourceType: 'Bundle',
      type: 'collection',
      entry: [{ fullUrl: `urn:uuid:${randomUUID()}`, resource: { resourceType: 'Basic', id: 'cli' } }],
    };
    const claims = {
      iss: partnerId,
      aud: gw.config.org,
      iat: Math.floor(Date.now() / 1000),
      jti: randomUUID(),
      exchange: randomUUID(),
      content_type: 'application/fhir+json',
      content: bundle,
    };
    writeFileSync(f('claims.json'), JSON.stringify(claims));
    jose([
      'jws',
      'sig',
      '-I',
      f('claims.json'),
      '-k',
      f('sig.jwk'),
      '-s',
      JSON.stringify({ protected: { typ: 'exchange+jwt', kid: sigKid } }),
      '-c',
      '-o',
      f('content.jws'),
    ]);
    jose([
      'jwe',
      'enc',
      '-i',
      JSON.stringify({ protected: { enc: 'A256GCM', cty: 'JWT', kid: ourEnc.kid } }),
      '-I',
      f('content.jws'),
      '-k',
      f('recipient.jwk'),
      '-c',
      '-o',
      f('envelope.jwe'),
    ]);
    const envelope = readFileSync(f('envelope.jwe'), 'utf8').trim();
    const header = JSON.parse(Buffer.from(envelope.split('.')[0]!, 'base64url').toString());
    expect(header).toMatchObject({ alg: 'ECDH-ES', enc: 'A256GCM', kid: ourEnc.kid });

    const res = await fetch(`${gw.url}/inbox`, {
      method: 'POST',
      headers: { 'content-type': 'application/jose' },
      body: envelope,
    });
    expect(res.status).toBe(200);
    const receipt = await res.text();

    // The CLI verifies our receipt against our published signing key.
    const receiptKid = JSON.parse(Buffer.from(receipt.split('.')[0]!, 'base64url').toString()).kid;
    writeFileSync(f('gateway-sig.jwk'), JSON.stringify(jwks.keys.find((k) => k.kid === receiptKid)));
    writeFileSync(f('receipt.jws'), receipt);
    const receiptClaims = JSON.parse(jose(['jws', 'ver', '-i', f('receipt.jws'), '-k', f('gateway-sig.jwk'), '-O-']));
    expect(receiptClaims).toMatchObject({
      iss: gw.config.org,
      aud: partnerId,
      delivery: claims.jti,
      digest: envelopeDigest(envelope),
      status: 'accepted',
    });

    // And the local EHR gets the bundle.
    const { rows } = await gw.app.ctx.pool.query('SELECT id FROM inbox_messages WHERE jti = $1', [claims.jti]);
    const ehr = await testClient(gw, { scopes: ['system/*.read'], receivesFrom: [partnerId] });
    const pulled = await fetch(`${gw.url}/inbox/messages/${rows[0].id}`, {
      headers: { authorization: await ehr.bearer() },
    });
    expect(pulled.status).toBe(200);
    expect(await pulled.json()).toEqual(bundle);
  });
});
