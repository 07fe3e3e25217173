import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { cleanEnv, runCli } from '../helpers/cli.ts';
import { createTestPki } from '../helpers/tls.ts';
import { ASSERTION_TYPE } from '../../src/auth/token-endpoint.ts';
import { SCOPE_ADMIN, SCOPE_ALL_READ } from '../../plugins/guard.ts';

describe('gateway clients / gateway tls: the first admin from a second shell (database only)', () => {
  let gw: TestGateway;
  let env: NodeJS.ProcessEnv;
  const dir = mkdtempSync(join(tmpdir(), 'gw-test-cli-'));

  beforeAll(async () => {
    gw = await startTestGateway();
    env = cleanEnv({ DATABASE_URL: gw.databaseUrl, DATA_DIR: dir });
  });
  afterAll(async () => gw?.close());

  it('registers an admin client whose real token then works on the admin API; list and disable', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES384');
    const kid = 'ops-1';
    writeFileSync(
      join(dir, 'ops.jwks.json'),
      JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'ES384' }] }),
    );
    const add = await runCli(
      [
        'clients',
        'add',
        '--id',
        'ops-console',
        '--jwks-file',
        join(dir, 'ops.jwks.json'),
        '--scope',
        `${SCOPE_ADMIN} ${SCOPE_ALL_READ}`,
        '--name',
        'Ops console',
      ],
      env,
    );
    expect(add.stderr).toBe('');
    expect(add.code).toBe(0);
    expect(add.stdout).toContain('registered client ops-console');

    const assertion = await new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg: 'ES384', kid })
      .setIssuer('ops-console')
      .setSubject('ops-console')
      .setAudience(`${gw.config.baseUrl}/auth/token`)
      .setExpirationTime('2m')
      .sign(privateKey);
    const tok = await request(gw.app.server)
      .post('/auth/token')
      .type('form')
      .send({
        grant_type: 'client_credentials',
        client_assertion_type: ASSERTION_TYPE,
        client_assertion: assertion,
        scope: SCOPE_ADMIN,
      })
      .expect(200);
    const bearer = `Bearer ${tok.body.access_token}`;

    // The admin registers an EHR through the API.
    const ehrKey = await exportJWK((await generateKeyPair('ES256')).publicKey);
    const created = await request(gw.app.server)
      .post('/admin/clients')
      .set('authorization', bearer)
      .send({
        id: 'ehr-a',
        name: 'EHR A',
        jwks: { keys: [{ ...ehrKey, kid: 'a1' }] },
        scope: 'system/Bundle.write system/*.read',
      })
      .expect(201);
    expect(created.body).toMatchObject({
      id: 'ehr-a',
      enabled: true,
      scopes: ['system/Bundle.write', 'system/*.read'],
    });
    const dup = await request(gw.app.server)
      .post('/admin/clients')
      .set('authorization', bearer)
      .send({ id: 'ehr-a', jwks: { keys: [{ ...ehrKey, kid: 'a1' }] }, scope: 'system/Bundle.write' })
      .expect(409);
    expect(dup.body.resourceType).toBe('OperationOutcome');
    const privateJwk = await exportJWK((await generateKeyPair('ES256', { extractable: true })).privateKey);
    await request(gw.app.server)
      .post('/admin/clients')
      .set('authorization', bearer)
      .send({ id: 'ehr-b', jwks: { keys: [{ ...privateJwk, kid: 'b1' }] }, scope: 'system/Bundle.write' })
      .expect(400);
    await request(gw.app.server)
      .post('/admin/clients')
      .set('authorization', bearer)
      .send({ id: 'ehr-c', jwks_uri: 'http://attacker.example/jwks', scope: 'system/Bundle.write' })
      .expect(400);

    const list = await runCli(['clients', 'list', '--json'], env);
    expect(list.code).toBe(0);
    const clients = JSON.parse(list.stdout) as Array<{ id: string; enabled: boolean }>;
    expect(clients.map((c) => c.id).sort()).toEqual(['ehr-a', 'ops-console']);

    const disabled = await request(gw.app.server)
      .post('/admin/clients/ehr-a/disable')
      .set('authorization', bearer)
      .expect(200);
    expect(disabled.body.enabled).toBe(false);

    expect((await runCli(['clients', 'disable', '--id', 'ops-console'], env)).code).toBe(0);
    await request(gw.app.server).get('/admin/clients').set('authorization', bearer).expect(401);

    const { rows } = await gw.app.ctx.pool.query<{ type: string }>(
      `SELECT type FROM audit_log WHERE type LIKE 'client.%' ORDER BY idx`,
    );
    expect(rows.map((r) => r.type)).toEqual([
      'client.registered',
      'client.registered',
      'client.disabled',
      'client.disabled',
    ]);
  });

  it('refuses bad input with usage errors', async () => {
    const noKeys = await runCli(['clients', 'add', '--id', 'x', '--scope', 'system/Bundle.write'], env);
    expect(noKeys.code).toBe(2);
    expect(noKeys.stderr).toContain('--jwks-uri');
    const badScope = await runCli(
      ['clients', 'add', '--id', 'x', '--jwks-uri', 'https://ehr.example/jwks', '--scope', 'patient/*.read'],
      env,
    );
    expect(badScope.code).toBe(2);
    expect(badScope.stderr).toContain('not a system scope');
  });

  it('routes inbox partners to a client: --receives-from on add (repeatable), update, list; fails closed without it', async () => {
    const jwksFile = join(dir, 'ehr-r.jwks.json');
    writeFileSync(
      jwksFile,
      JSON.stringify({ keys: [{ ...(await exportJWK((await generateKeyPair('ES256')).publicKey)), kid: 'r1' }] }),
    );
    const base = ['clients', 'add', '--jwks-file', jwksFile, '--scope', 'system/*.read'];
    const routed = await runCli(
      [...base, '--id', 'ehr-routed', '--receives-from', 'https://pa.example', '--receives-from', 'https://pb.example'],
      env,
    );
    expect(routed.code).toBe(0);
    expect(routed.stdout).toContain('receives from: https://pa.example https://pb.example');
    const plain = await runCli([...base, '--id', 'ehr-plain'], env);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toContain('receives from: nothing');
    const receivesFrom = async (id: string) => {
      const list = JSON.parse((await runCli(['clients', 'list', '--json'], env)).stdout) as Array<{
        id: string;
        receivesFrom: string[];
      }>;
      return list.find((c) => c.id === id)!.receivesFrom;
    };
    expect(await receivesFrom('ehr-routed')).toEqual(['https://pa.example', 'https://pb.example']);
    expect(await receivesFrom('ehr-plain')).toEqual([]);

    expect((await runCli(['clients', 'update', '--id', 'ehr-plain', '--receives-from', '*'], env)).code).toBe(0);
    expect(await receivesFrom('ehr-plain')).toEqual(['*']);
    expect((await runCli(['clients', 'update', '--id', 'ehr-routed', '--receives-nothing'], env)).code).toBe(0);
    expect(await receivesFrom('ehr-routed')).toEqual([]);

    const neither = await runCli(['clients', 'update', '--id', 'ehr-plain'], env);
    expect([neither.code, neither.stderr]).toEqual([2, expect.stringContaining('--receives-nothing')]);
    const starAndMore = await runCli(
      ['clients', 'update', '--id', 'ehr-plain', '--receives-from', '*', '--receives-from', 'https://pa.example'],
      env,
    );
    expect([starAndMore.code, starAndMore.stderr]).toEqual([
      2,
      expect.stringContaining('* already means every partner'),
    ]);
    const nobody = await runCli(['clients', 'update', '--id', 'nobody', '--receives-from', '*'], env);
    expect([nobody.code, nobody.stderr]).toEqual([2, expect.stringContaining('no client nobody')]);
    const { rows } = await gw.app.ctx.pool.query<{ entry: string }>(
      `SELECT entry FROM audit_log WHERE type = 'client.updated' ORDER BY idx`,
    );
    expect(rows.map((r) => JSON.parse(r.entry).detail.receives_from)).toEqual(['*', '']);
  });

  it('binds, lists and unbinds a partner certificate for mutual TLS', async () => {
    const pki = createTestPki();
    const bind = await runCli(
      ['tls', 'bind', '--partner', 'https://partner.example.org', '--cert', pki.client.certFile],
      env,
    );
    expect(bind.code).toBe(0);
    const sha = /certificate ([0-9a-f]{64})/.exec(bind.stdout)![1]!;
    const list = JSON.parse((await runCli(['tls', 'list', '--json'], env)).stdout);
    expect(list).toEqual([expect.objectContaining({ partnerId: 'https://partner.example.org', certSha256: sha })]);
    expect((await runCli(['tls', 'unbind', '--sha256', sha], env)).code).toBe(0);
    expect(JSON.parse((await runCli(['tls', 'list', '--json'], env)).stdout)).toEqual([]);
  });
});
