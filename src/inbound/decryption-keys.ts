import type { Keyring } from '../keys/keyring.ts';
import { openCompactJwe, type DecryptionKeyResolver, type OpenedJwe, type OpenOptions } from '../jose/open.ts';
import { HsmError } from '../../hsm/hsm.ts';
import { GatewayError } from '../errors.ts';
import type { EcCurve } from '../jose/jwe-header.ts';

/** Least time between two keyring reloads caused by an unknown kid (a flood of bad kids must not hammer the database). */
const RELOAD_COOLDOWN_MS = 5_000;

/**
 * The gateway's decryption keys: protocol v1 requires the envelope to name
 * our key by kid; any enc key not yet destroyed may open (rotation leaves the
 * deactivated key usable for envelopes sealed before the switch). An unknown
 * kid reloads the keyring once, since rotation may run in another process.
 */
export function gatewayDecryptionKeys(keyring: Keyring): DecryptionKeyResolver {
  let lastReload = 0;
  return async (kid) => {
    if (kid === undefined) return undefined;
    let row = keyring.decryptionKey(kid);
    if (!row && Date.now() - lastReload > RELOAD_COOLDOWN_MS) {
      lastReload = Date.now();
      await keyring.reload();
      row = keyring.decryptionKey(kid);
    }
    if (!row || row.public_jwk.kty !== 'EC') return undefined;
    return { hsmId: row.hsm_id, crv: row.public_jwk.crv as EcCurve, kid: row.kid };
  };
}

/**
 * Open with the gateway's keys; a key the keyring still lists but the HSM no
 * longer holds (destroyed by a rotation in another process) is an unknown
 * kid for the sender, not a server fault.
 */
export async function openWithGatewayKeys(
  keyring: Keyring,
  jwe: string,
  options: Omit<OpenOptions, 'resolveKey'> & { resolveKey: DecryptionKeyResolver },
): Promise<OpenedJwe> {
  try {
    return await openCompactJwe(jwe, options);
  } catch (err) {
    if (err instanceof HsmError && err.code === 'HSM_KEY_NOT_FOUND') {
      await keyring.reload();
      throw new GatewayError('JWE_UNKNOWN_KID', 'the envelope names an encryption key this gateway no longer holds', {
        expression: 'header.kid',
        cause: err,
      });
    }
    throw err;
  }
}
