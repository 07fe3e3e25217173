import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { acquireModule, releaseModule } from './module.ts';
import { HsmError } from './errors.ts';
import { findSlotByTokenLabel, initToken } from './token.ts';

export const SOFTHSM_LIBRARY = '/usr/lib/softhsm/libsofthsm2.so';
export const SOFTHSM_INSTALL_HINT =
  'SoftHSM is not installed. Install it with: sudo apt-get install -y softhsm2 (Debian/Ubuntu), then start again.';

export interface DevToken {
  library: string;
  pin: string;
  configFile: string;
}

function secretFile(path: string): string {
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  const value = randomBytes(12).toString('base64url');
  writeFileSync(path, value + '\n', { mode: 0o600 });
  return value;
}

/**
 * Development only: a SoftHSM token in `dir`, created on first use, with its
 * PINs in 0600 files beside it. SoftHSM reads SOFTHSM2_CONF through C getenv
 * when the library initialises, so it is set here, before the first load;
 * an SOFTHSM2_CONF already in the environment wins.
 */
export function ensureDevToken(dir: string, label: string): DevToken {
  if (!existsSync(SOFTHSM_LIBRARY)) throw new HsmError('HSM_UNAVAILABLE', SOFTHSM_INSTALL_HINT);
  const home = resolve(dir);
  mkdirSync(join(home, 'tokens'), { recursive: true, mode: 0o700 });
  const configFile = join(home, 'softhsm2.conf');
  if (!existsSync(configFile)) {
    writeFileSync(
      configFile,
      `directories.tokendir = ${join(home, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`,
      { mode: 0o600 },
    );
  }
  process.env.SOFTHSM2_CONF ??= configFile;
  const pin = secretFile(join(home, 'user-pin'));
  const soPin = secretFile(join(home, 'so-pin'));
  const p11 = acquireModule(SOFTHSM_LIBRARY);
  try {
    if (!findSlotByTokenLabel(p11, label)) initToken(p11, label, soPin, pin);
  } finally {
    releaseModule(SOFTHSM_LIBRARY);
  }
  return { library: SOFTHSM_LIBRARY, pin, configFile: process.env.SOFTHSM2_CONF };
}
