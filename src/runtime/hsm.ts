import { join } from 'node:path';
import type { Config } from '../config.ts';
import type { Logger } from '../gateway-context.ts';
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

/**
 * Say at start which of the gateway's HSM operations this module cannot do
 * (e.g. p11-kit before 0.25 does not carry ECDH or AES-GCM): they answer 503
 * until it can, so the operator learns it here rather than from a partner.
 */
export async function reportMissingMechanisms(hsm: Hsm, logger: Pick<Logger, 'error'>): Promise<void> {
  const missing = await hsm.missingMechanisms();
  if (missing.length)
    logger.error(
      { missing: missing.map((m) => `${m.name} (${m.usedFor})`) },
      'the HSM module does not offer mechanisms the gateway uses: those operations answer 503 until it does',
    );
}
