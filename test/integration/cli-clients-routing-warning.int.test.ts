import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportJWK, generateKeyPair } from 'jose';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { cleanEnv, runCli } from '../helpers/cli.ts';
import { SCOPE_ADMIN, SCOPE_ALL_READ, SCOPE_BUNDLE_WRITE } from '../../src/auth/scopes.ts';

const WARNING = /receives from no partner, so it will see no message until it is routed/g;

describe('gateway clients add: a reading client routed to nothing is warned about, once', () => {
  let gw: TestGateway;
  let env: NodeJS.ProcessEnv;
  let jwksFile: string;
  const dir = mkdtempSync(join(tmpdir(), 'gw-test-cli-routing-'));

  beforeAll(async () => {
    gw = await startTestGateway();
    env = cleanEnv({ DATABASE_URL: gw.databaseUrl, DATA_DIR: dir });
    const { publicKey } = await generateKeyPair('ES256');
    jwksFile = join(dir, 'ehr.jwks.json');
    writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] }));
  });
  afterAll(async () => gw?.close());

  const add = (id: string, scope: string, ...extra: string[]) =>
    runCli(['clients', 'add', '--id', id, '--jwks-file', jwksFile, '--scope', scope, ...extra], env);

  it('warns on stderr, with the command that routes it, for a read scope without --receives-from', async () => {
    const r = await add('ehr-unrouted', `${SCOPE_BUNDLE_WRITE} ${SCOPE_ALL_READ}`);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('registered client ehr-unrouted');
    expect(r.stdout).not.toMatch(WARNING);
    expect(r.stderr.match(WARNING)).toHaveLength(1);
    expect(r.stderr).toContain('gateway clients update --id ehr-unrouted --receives-from PARTNER');
  });

  it('says nothing when the client is routed, cannot read, or administers (and so sees every message)', async () => {
    for (const [id, scope, ...extra] of [
      ['ehr-routed', SCOPE_ALL_READ, '--receives-from', 'partner-x'],
      ['ehr-routed-all', SCOPE_ALL_READ, '--receives-from', '*'],
      ['sender-only', SCOPE_BUNDLE_WRITE],
      ['ops', `${SCOPE_ADMIN} ${SCOPE_ALL_READ}`],
    ] as const) {
      const r = await add(id, scope, ...extra);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr, id).toBe('');
    }
  });
});
