import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GATEWAY, NODE, cleanEnv, exited, spawnCli, waitFor } from '../helpers/cli.ts';
import { createTestDatabase } from '../helpers/db.ts';
import { createTestToken } from '../helpers/hsm.ts';
import { freePort } from '../helpers/ports.ts';

/** `gateway start` on a test database and a test token, as a second shell would run it. */
async function startEnv(): Promise<{ env: NodeJS.ProcessEnv; port: number }> {
  const token = createTestToken();
  const port = await freePort();
  const env = cleanEnv({
    DATABASE_URL: await createTestDatabase(),
    HSM_MODULE: token.library,
    HSM_TOKEN_LABEL: token.label,
    HSM_PIN: token.pin,
    SOFTHSM2_CONF: process.env.SOFTHSM2_CONF ?? '',
    PORT: String(port),
    DATA_DIR: mkdtempSync(join(tmpdir(), 'gw-test-banner-')),
    ORG_ID: 'hospital-a',
    LOG_LEVEL: 'info',
  });
  return { env, port };
}

const BANNER = /gateway ready: hospital-a[\s\S]*API reference +http:\/\/127\.0\.0\.1:(\d+)\/docs/;

describe('gateway start tells where to go', () => {
  it('prints the URLs that matter when stdout is a terminal', async () => {
    const { env, port } = await startEnv();
    // script(1) gives the gateway a pseudo-terminal as stdout; exec so the gateway is script's child.
    const child = spawn('script', ['-qfec', `exec ${NODE} ${GATEWAY} start`, '/dev/null'], {
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    try {
      await waitFor(async () => BANNER.test(out), 30_000, 'the banner');
      const plain = out.replaceAll('\r', '');
      for (const path of ['', '/fhir', '/docs', '/audit/ui'])
        expect(plain).toContain(`http://127.0.0.1:${port}${path}\n`);
    } finally {
      const gateway = execFileSync('ps', ['-o', 'pid=', '--ppid', String(child.pid)], { encoding: 'utf8' }).trim();
      if (gateway) process.kill(Number(gateway), 'SIGTERM');
      expect(await exited(child)).toBe(0);
    }
  });

  it('logs one line with the URLs, and no banner, when stdout is not a terminal', async () => {
    const { env, port } = await startEnv();
    const child = spawnCli(['start'], env);
    try {
      await waitFor(async () => child.output().includes('"msg":"gateway ready"'), 30_000, 'the ready line');
      const ready = child
        .output()
        .split('\n')
        .filter((l) => l.includes('"msg":"gateway ready"'));
      expect(ready).toHaveLength(1);
      expect(JSON.parse(ready[0] ?? '{}')).toMatchObject({
        url: `http://127.0.0.1:${port}`,
        org: 'hospital-a',
        fhir: `http://127.0.0.1:${port}/fhir`,
        docs: `http://127.0.0.1:${port}/docs`,
        audit: `http://127.0.0.1:${port}/audit/ui`,
      });
      expect(child.output()).not.toMatch(BANNER);
    } finally {
      child.kill('SIGTERM');
      expect(await exited(child)).toBe(0);
    }
  });
});
