import type { KemKeyResolver } from '../jose/pq/hybrid-jwe.ts';
import type { Keyring } from '../keys/keyring.ts';

/** Least time between two keyring reloads caused by an unknown kem_kid. */
const RELOAD_COOLDOWN_MS = 5_000;

/**
 * The gateway's ML-KEM-768 keys for protocol v2 envelopes, by kem_kid: any
 * not yet destroyed, with one keyring reload on an unknown kid (rotation may
 * run in another process), as for the EC keys (decryption-keys.ts).
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
