import { join } from 'node:path';
import type { Config } from '../config.ts';
import { required } from '../required.ts';
import { Hsm } from '../../hsm/hsm.ts';
import { ensureDevToken } from '../../hsm/softhsm.ts';

/** HSM_MODULE + PIN if configured; otherwise the development SoftHSM token in DATA_DIR/softhsm. */
export function openHsm(config: Config): Hsm {
  if (config.hsmModule) {
    return Hsm.open({
      library: config.hsmModule,
      tokenLabel: config.hsmTokenLabel,
      pin: required(config.resolvedPin, 'a PIN with HSM_MODULE (the configuration refuses to load without one)'),
      sessions: config.hsmSessions,
    });
  }
  const dev = ensureDevToken(join(config.dataDir, 'softhsm'), config.hsmTokenLabel);
  return Hsm.open({
    library: dev.library,
    tokenLabel: config.hsmTokenLabel,
    pin: config.resolvedPin ?? dev.pin,
    sessions: config.hsmSessions,
  });
}
