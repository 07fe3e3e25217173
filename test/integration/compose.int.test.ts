import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { ROOT } from '../helpers/cli.ts';

/** No Docker engine runs here, so the compose file is checked by docker-compose's own `config` validation. */
describe('docker-compose.yml', () => {
  it('is valid: postgres, serve and worker processes, and an HSM service reached through p11-kit', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gw-compose-'));
    copyFileSync(join(ROOT, 'docker-compose.yml'), join(dir, 'docker-compose.yml'));
    copyFileSync(join(ROOT, 'Dockerfile'), join(dir, 'Dockerfile'));
    mkdirSync(join(dir, 'secrets'));
    writeFileSync(join(dir, 'secrets', 'hsm-pin'), 'test-pin\n');
    const rendered = execFileSync('docker-compose', ['config'], { cwd: dir, encoding: 'utf8' });
    type Service = {
      healthcheck?: { test?: unknown; disable?: boolean };
      command?: string[];
      volumes?: Array<string | { source?: string; target?: string }>;
      environment?: Record<string, string>;
    };
    const config = parse(rendered) as { services: Record<string, Service>; volumes: Record<string, unknown> };
    const svc = (name: string) => config.services[name]!;
    const mounts = (name: string) =>
      (svc(name).volumes ?? []).map((v) =>
        typeof v === 'string' ? v.replace(/:(rw|ro)$/, '') : `${v.source}:${v.target}`,
      );
    expect(Object.keys(config.services).sort()).toEqual(['gateway', 'hsm', 'postgres', 'worker']);
    for (const name of ['postgres', 'hsm', 'gateway', 'worker']) expect(svc(name).healthcheck?.test, name).toBeTruthy();
    expect(svc('gateway').command).toEqual(['serve']);
    expect(svc('worker').command).toEqual(['worker']);
    // The token lives on the HSM service only, served by p11-kit over a socket both gateway processes reach.
    expect(mounts('hsm')).toContain('softhsm:/var/lib/softhsm');
    expect(JSON.stringify(svc('hsm').command)).toContain('p11-kit server');
    for (const name of ['gateway', 'worker']) {
      expect(mounts(name), name).not.toContain('softhsm:/var/lib/softhsm');
      expect(mounts(name), name).toContain('hsm-socket:/run/p11-kit');
      // serve and worker share DATA_DIR: imaging files are written by one and sent or purged by the other.
      expect(mounts(name), name).toContain('gateway-data:/var/lib/gateway');
      expect(svc(name).environment?.HSM_MODULE, name).toMatch(/p11-kit-client\.so$/);
      expect(svc(name).environment?.P11_KIT_SERVER_ADDRESS, name).toBe('unix:path=/run/p11-kit/pkcs11');
    }
    expect(Object.keys(config.volumes).sort()).toEqual(['gateway-data', 'hsm-socket', 'pgdata', 'softhsm']);
    // The image carries both halves of p11-kit.
    expect(readFileSync(join(ROOT, 'Dockerfile'), 'utf8')).toMatch(/p11-kit p11-kit-modules/);
  });
});
