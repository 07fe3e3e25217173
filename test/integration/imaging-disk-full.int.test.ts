import { spawn, type ChildProcess } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ASSERTION_TYPE, TOKEN_PATH } from '../../src/auth/token-endpoint.ts';
import { cleanEnv, exited, GATEWAY, NODE, runCli, waitFor } from '../helpers/cli.ts';
import { createTestDatabase } from '../helpers/db.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { writeSyntheticDicom } from '../helpers/imaging.ts';
import { freePort } from '../helpers/ports.ts';

// Gateway A runs as its own process in a private mount namespace (unshare -m, as root, which .ci/run is),
// where DATA_DIR/imaging is a 2 MiB tmpfs: a real ENOSPC in the middle of a 6 MiB study. B is a normal
// test gateway. A must answer 507 with Retry-After and keep nothing (no file, no exchange, no delivery); the
// live transmission it had started to B (cut-through, the default) is dropped, and B keeps nothing either.
describe('imaging intake on a full disk', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gw-imaging-full-'));
  const dataDir = join(dir, 'a');
  let b: TestGateway;
  let a: ChildProcess;
  let aUrl: string;
  let aDb: string;
  let token: string;

  beforeAll(async () => {
    b = await startTestGateway();
    aDb = await createTestDatabase();
    const port = await freePort();
    aUrl = `http://127.0.0.1:${port}`;
    const env = cleanEnv({
      DATA_DIR: dataDir,
      DATABASE_URL: aDb,
      PORT: String(port),
      HOST: '127.0.0.1',
      PUBLIC_URL: `http://127.0.0.1:${port}`,
    });
    const cli = async (args: string[]) => {
      const r = await runCli(args, env);
      if (r.code !== 0) throw new Error(`gateway ${args.join(' ')}: ${r.stderr}`);
    };
    await cli(['migrate']);
    await cli([
      'partners',
      'add',
      '--id',
      b.config.org,
      '--endpoint',
      `${b.url}/inbox`,
      '--jwks-uri',
      `${b.url}/.well-known/jwks.json`,
    ]);
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    writeFileSync(
      join(dir, 'ehr.jwks.json'),
      JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'ehr-1', alg: 'ES256', use: 'sig' }] }),
    );
    await cli([
      'clients',
      'add',
      '--id',
      'ehr',
      '--jwks-file',
      join(dir, 'ehr.jwks.json'),
      '--scope',
      'system/Bundle.write system/*.read',
    ]);

    const mount =
      'mkdir -p "$1/imaging" && mount -t tmpfs -o size=2m,mode=0700 tmpfs "$1/imaging" && shift && exec "$@"';
    a = spawn('unshare', ['-m', 'sh', '-c', mount, 'sh', dataDir, NODE, GATEWAY, 'start'], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    a.stdout!.on('data', (d) => (out += d));
    a.stderr!.on('data', (d) => (out += d));
    await waitFor(async () => (await fetch(`${aUrl}/ready`)).ok, 60_000, `gateway A ready (${out.slice(-500)})`);

    const aud = aUrl + TOKEN_PATH;
    const assertion = await new SignJWT({ iss: 'ehr', sub: 'ehr', aud, jti: randomBytes(8).toString('hex') })
      .setProtectedHeader({ alg: 'ES256', kid: 'ehr-1', typ: 'JWT' })
      .setExpirationTime('4m')
      .sign(privateKey);
    const res = await fetch(aud, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_assertion_type: ASSERTION_TYPE,
        client_assertion: assertion,
        scope: 'system/Bundle.write system/*.read',
      }),
    });
    token = ((await res.json()) as { access_token: string }).access_token;
  });

  afterAll(async () => {
    if (a && a.exitCode === null) {
      a.kill('SIGTERM');
      await exited(a);
    }
    await b?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers 507 INSUFFICIENT_STORAGE with Retry-After, and keeps no file and no row on either side', async () => {
    const study = join(dir, 'study.dcm');
    await writeSyntheticDicom(study, 6 * 1024 * 1024);
    // Chunked, with no Content-Length: A cannot check the size up front and meets the full disk mid-stream.
    const bytes = readFileSync(study);
    const chunked = new ReadableStream<Uint8Array>({
      start(c) {
        for (let at = 0; at < bytes.length; at += 256 * 1024) c.enqueue(bytes.subarray(at, at + 256 * 1024));
        c.close();
      },
    });
    const res = await fetch(`${aUrl}/imaging?recipient=${encodeURIComponent(b.config.org)}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/dicom' },
      body: chunked,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(507);
    expect(res.headers.get('retry-after')).toBe('60');
    const outcome = (await res.json()) as {
      resourceType: string;
      issue: Array<{ code: string; diagnostics: string; details: { coding: Array<{ code: string }> } }>;
    };
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue[0]).toMatchObject({
      code: 'transient',
      details: { coding: [{ code: 'INSUFFICIENT_STORAGE' }] },
    });

    // What A sees of its own imaging directory (the tmpfs exists only in A's mount namespace).
    const outbound = `/proc/${a.pid}/root${dataDir}/imaging/outbound`;
    expect(readdirSync(outbound)).toEqual([]);
    const db = new pg.Client({ connectionString: aDb });
    await db.connect();
    try {
      expect((await db.query('SELECT count(*)::int AS n FROM imaging_exchanges')).rows[0].n).toBe(0);
      expect((await db.query('SELECT count(*)::int AS n FROM imaging_deliveries')).rows[0].n).toBe(0);
    } finally {
      await db.end();
    }
    // B saw the start of a transmission that never ended: nothing of it became a message.
    const bInbox = join(b.config.dataDir, 'imaging', 'inbox');
    await waitFor(async () => readdirSync(bInbox).length === 0, 10_000, "B's partial file removed"); // its temporary file too
    expect((await b.app.ctx.pool.query('SELECT count(*)::int AS n FROM inbox_messages')).rows[0].n).toBe(0);
    expect((await fetch(`${aUrl}/ready`)).status).toBe(200); // and A carries on
  });

  it('refuses up front, from Content-Length, a study that cannot fit: 507 before any of it is stored', async () => {
    const study = join(dir, 'study.dcm');
    const res = await fetch(`${aUrl}/imaging?recipient=${encodeURIComponent(b.config.org)}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/dicom' },
      body: readFileSync(study),
    });
    expect(res.status).toBe(507);
    expect(res.headers.get('retry-after')).toBe('60');
    const outcome = (await res.json()) as {
      issue: Array<{ diagnostics: string; details: { coding: Array<{ code: string }> } }>;
    };
    expect(outcome.issue[0]?.details.coding[0]?.code).toBe('INSUFFICIENT_STORAGE');
    expect(outcome.issue[0]?.diagnostics).toMatch(/needs about 8 MiB of storage once sealed/); // 6 MiB, base64url-sealed for one recipient
    expect(readdirSync(`/proc/${a.pid}/root${dataDir}/imaging/outbound`)).toEqual([]);
  });

  it('refuses up front a Content-Length over DICOM_MAX_BYTES with 413, without waiting for the body', async () => {
    // Announce 5 GiB (the default limit is 4 GiB), send a few bytes, and wait: the answer must come at once.
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        `${aUrl}/imaging?recipient=${encodeURIComponent(b.config.org)}`,
        {
          method: 'POST',
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/dicom',
            'content-length': String(5 * 1024 ** 3),
          },
        },
        (res) => {
          let body = '';
          res
            .setEncoding('utf8')
            .on('data', (c: string) => (body += c))
            .on('end', () => resolve({ status: res.statusCode!, body }));
        },
      );
      req.on('error', reject);
      req.write(Buffer.alloc(1024));
    });
    expect(answer.status).toBe(413);
    expect(JSON.parse(answer.body).issue[0].details.coding[0].code).toBe('PAYLOAD_TOO_LARGE');
  });
});
