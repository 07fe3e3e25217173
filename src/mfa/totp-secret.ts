import { randomBytes } from 'node:crypto';
import type { Hsm } from '../../hsm/hsm.ts';
import { GCM_IV_BYTES } from '../../hsm/secret-key.ts';
import type { Queryable } from '../db/pool.ts';
import { secretKeyId } from '../keys/secret-keys.ts';

/** A TOTP secret as the database holds it: AES-256-GCM ciphertext (tag appended) and its IV. */
export interface SealedSecret {
  ct: Buffer;
  iv: Buffer;
}

// The account name is the associated data: a ciphertext copied to another account's row does not open.
const aad = (name: string) => Buffer.from(`totp-secret:${name}`, 'utf8');

/** Encrypt a TOTP secret in the HSM under the factor-secrets key, with a fresh random IV. */
export async function sealTotpSecret(hsm: Hsm, db: Queryable, name: string, secret: Buffer): Promise<SealedSecret> {
  const iv = randomBytes(GCM_IV_BYTES);
  const ct = await hsm.encrypt(await secretKeyId(db, 'factor-secrets'), iv, aad(name), secret);
  return { ct, iv };
}

/** Decrypt a stored TOTP secret in the HSM; fails unless it was sealed for this account under this key. */
export async function openTotpSecret(hsm: Hsm, db: Queryable, name: string, sealed: SealedSecret): Promise<Buffer> {
  return hsm.decrypt(await secretKeyId(db, 'factor-secrets'), sealed.iv, aad(name), sealed.ct);
}
