import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { testClient } from '../helpers/auth.ts';
import { writeSyntheticDicom } from '../helpers/imaging.ts';
import { SCOPE_BUNDLE_WRITE } from '../../src/auth/scopes.ts';

/**
 * Interop of a CAPTURED imaging delivery: the gateway seals a ~20 MB study
 * to a partner whose keys Debian's jose CLI holds; the CLI opens the content
 * JWE from DATA_DIR to the same bytes, and opens the manifest envelope and
 * verifies its inner JWS against the gateway's published signing key.
 */
const JOSE = '/usr/bin/jose';
const jose = (args: string[]) => execFileSync(JOSE, args, { encoding: 'utf8', maxBuffer: 1 << 26 });

describe('a captured imaging envelope opens with the jose CLI', () => {
  let gw: TestGateway;
  let dir: string;
  beforeAll(async () => {
    // No worker runs here, and the partner's inbox is unreachable: the sealed files stay in DATA_DIR.
    gw = await startTestGateway();
    dir = mkdtempSync(join(tmpdir(), 'imaging-cli-'));
  });
  afterAll(async () => {
    await gw?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(
    'content JWE (~27 MB) decrypts to the submitted DICOM; the manifest decrypts and its signature verifies',
    { timeout: 120_000 },
    async () => {
      const f = (n: string) => join(dir, n);
      jose(['jwk', 'gen', '-i', '{"kty":"EC","crv":"P-256"}', '-o', f('enc.jwk')]);
      const encPub = {
        ...JSON.parse(jose(['jwk', 'pub', '-i', f('enc.jwk')])),
        kid: 'cli-enc',
        use: 'enc',
        alg: 'ECDH-ES',
      };
      jose(['jwk', 'gen', '-i', '{"alg":"ES256"}', '-o', f('sig.jwk')]);
      const sigPub = {
        ...JSON.parse(jose(['jwk', 'pub', '-i', f('sig.jwk')])),
        kid: 'cli-sig',
        use: 'sig',
        alg: 'ES256',
      };
      delete sigPub.key_ops;
      const partnerId = 'https://cli-imaging-partner.test';
      await gw.app.ctx.directory.add({
        id: partnerId,
        endpoint: 'http://127.0.0.1:9/inbox',
        jwks: { keys: [sigPub, encPub] },
      });

      await writeSyntheticDicom(f('study.dcm'), 20 * 1024 * 1024, 'cli');
      const dicom = readFileSync(f('study.dcm'));
      const ehr = await testClient(gw, { scopes: [SCOPE_BUNDLE_WRITE] });
      const res = await request(gw.app.server)
        .post(`/imaging?recipient=${encodeURIComponent(partnerId)}`)
        .set('authorization', await ehr.bearer())
        .set('content-type', 'application/dicom')
        .send(dicom);
      expect(res.status, res.text.slice(0, 300)).toBe(202);
      const exchange = (res.headers['content-location'] as string).split('/').pop();
      const { rows } = await gw.app.ctx.pool.query(
        'SELECT manifest_envelope, content_path FROM imaging_deliveries WHERE exchange_id = $1',
        [exchange],
      );
      expect(rows).toHaveLength(1);

      // The content JWE exactly as stored and sent.
      const content = readFileSync(rows[0].content_path, 'latin1');
      expect(content.length).toBeGreaterThan(27_000_000);
      const header = JSON.parse(Buffer.from(content.slice(0, content.indexOf('.')), 'base64url').toString());
      expect(header).toMatchObject({ alg: 'ECDH-ES', enc: 'A256GCM', kid: 'cli-enc', cty: 'application/dicom' });
      jose(['jwe', 'dec', '-i', rows[0].content_path, '-k', f('enc.jwk'), '-O', f('opened.dcm')]);
      const sha = (b: Buffer) => createHash('sha256').update(b).digest('base64url');
      expect(sha(readFileSync(f('opened.dcm')))).toBe(sha(dicom));

      // The manifest: a normal envelope; its JWS verifies with the gateway's published signing key.
      writeFileSync(f('manifest.jwe'), rows[0].manifest_envelope);
      jose(['jwe', 'dec', '-i', f('manifest.jwe'), '-k', f('enc.jwk'), '-O', f('manifest.jws')]);
      const jwks = (await (await fetch(`${gw.url}/.well-known/jwks.json`)).json()) as {
        keys: Array<Record<string, unknown>>;
      };
      const jws = readFileSync(f('manifest.jws'), 'utf8');
      const kid = JSON.parse(Buffer.from(jws.split('.')[0]!, 'base64url').toString()).kid;
      writeFileSync(f('gw-sig.jwk'), JSON.stringify({ ...jwks.keys.find((k) => k.kid === kid), key_ops: undefined }));
      const payload = JSON.parse(jose(['jws', 'ver', '-i', f('manifest.jws'), '-k', f('gw-sig.jwk'), '-O-'])) as Record<
        string,
        { sha256: string; length: number; imagingStudy: { numberOfInstances: number } }
      > & { content_type: string; aud: string };
      expect(payload.aud).toBe(partnerId);
      expect(payload.content_type).toBe('application/dicom');
      expect(payload.content!.sha256).toBe(sha(dicom));
      expect(payload.content!.length).toBe(dicom.length);
      expect(payload.content!.imagingStudy.numberOfInstances).toBe(1);
    },
  );
});
