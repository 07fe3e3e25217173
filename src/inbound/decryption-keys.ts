import type { Keyring } from '../keys/keyring.ts';
import { openCompactJwe, type DecryptionKeyResolver, type OpenedJwe, type OpenOptions } from '../jose/open.ts';
import { HsmError } from '../../hsm/hsm.ts';
import { GatewayError } from '../errors.ts';
import type { EcCurve } from '../jose/ec-point.ts';
import { openHybridCompactJwe, type KemKeyResolver } from '../jose/pq/hybrid-jwe.ts';
import type { ProtocolVersion } from '../protocol/v2-acceptance.ts';

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
 * The gateway's ML-KEM-768 keys for protocol v2 envelopes, by `kem_kid`: any
 * not yet destroyed, with the same one reload on an unknown kid as the EC keys.
 */
export function gatewayKemKeys(keyring: Keyring): KemKeyResolver {
  let lastReload = 0;
  return async (kid) => {
    if (kid === undefined) return undefined;
    let key = await keyring.kemKey(kid);
    if (!key && Date.now() - lastReload > RELOAD_COOLDOWN_MS) {
      lastReload = Date.now();
      await keyring.reload();
      key = await keyring.kemKey(kid);
    }
    return key;
  };
}

/**
 * Open with the gateway's keys, a v1 envelope with its EC key, a v2 one with
 * its EC and ML-KEM keys (ECDH and the KDF in the HSM either way); a key the
 * keyring still lists but the HSM no longer holds (destroyed by a rotation in
 * another process) is an unknown kid for the sender, not a server fault.
 */
export async function openWithGatewayKeys(
  keyring: Keyring,
  jwe: string,
  options: Omit<OpenOptions, 'resolveKey'> & {
    resolveKey: DecryptionKeyResolver;
    protocol?: ProtocolVersion;
    resolveKemKey?: KemKeyResolver;
  },
): Promise<OpenedJwe> {
  const { protocol = 1, resolveKemKey = gatewayKemKeys(keyring), ...open } = options;
  try {
    return protocol === 2
      ? await openHybridCompactJwe(jwe, { ...open, resolveKemKey })
      : await openCompactJwe(jwe, open);
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
