import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { acquireModule, releaseModule } from '../../hsm/module.ts';
import { initToken } from '../../hsm/token.ts';
import { SOFTHSM_LIBRARY } from '../../hsm/softhsm.ts';

export interface TestToken {
  library: string;
  label: string;
  pin: string;
  soPin: string;
  tokenDir: string;
}

let tokenDir: string | undefined;

/**
 * A real SoftHSM token in a temporary directory. The SoftHSM config must be in
 * the environment before the library first initialises in this process, so
 * every token of a test file shares one temporary token directory.
 */
export function createTestToken(label = `test-${randomBytes(4).toString('hex')}`): TestToken {
  if (!tokenDir) {
    tokenDir = mkdtempSync(join(tmpdir(), 'gw-test-hsm-'));
    mkdirSync(join(tokenDir, 'tokens'));
    const conf = join(tokenDir, 'softhsm2.conf');
    writeFileSync(
      conf,
      `directories.tokendir = ${join(tokenDir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`,
    );
    process.env.SOFTHSM2_CONF = conf;
  }
  const pin = '1234-' + randomBytes(4).toString('hex');
  const soPin = 'so-' + randomBytes(4).toString('hex');
  const p11 = acquireModule(SOFTHSM_LIBRARY);
  try {
    initToken(p11, label, soPin, pin);
  } finally {
    releaseModule(SOFTHSM_LIBRARY);
  }
  return { library: SOFTHSM_LIBRARY, label, pin, soPin, tokenDir };
}
