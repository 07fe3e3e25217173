import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { ROOT } from '../helpers/cli.ts';

/** No Docker engine runs here, so the compose file is checked by docker-compose's own `config` validation. */
describe('docker-compose.yml', () => {
  it('is valid and defines postgres, gateway, worker and a SoftHSM token volume with health checks', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gw-compose-'));
    copyFileSync(join(ROOT, 'docker-compose.yml'), join(dir, 'docker-compose.yml'));
    copyFileSync(join(ROOT, 'Dockerfile'), join(dir, 'Dockerfile'));
    mkdirSync(join(dir, 'secrets'));
    writeFileSync(join(dir, 'secrets', 'hsm-pin'), 'test-pin\n');
    const rendered = execFileSync('docker-compose', ['config'], { cwd: dir, encoding: 'utf8' });
    const config = parse(rendered) as {
      services: Record<
        string,
        { healthcheck?: { test?: unknown; disable?: boolean }; command?: string[]; volumes?: unknown[] }
      >;
      volumes: Record<string, unknown>;
    };
    expect(Object.keys(config.services).sort()).toEqual(['gateway', 'hsm-init', 'postgres', 'worker']);
    for (const name of ['postgres', 'gateway', 'worker'])
      expect(config.services[name]!.healthcheck?.test, name).toBeTruthy();
    expect(config.services.gateway!.command).toEqual(['serve']);
    expect(config.services.worker!.command).toEqual(['worker']);
    expect(Object.keys(config.volumes)).toContain('softhsm');
    expect(JSON.stringify(config.services.gateway!.volumes)).toContain('/var/lib/softhsm');
    expect(JSON.stringify(config.services.worker!.volumes)).toContain('/var/lib/softhsm');
  });
});
