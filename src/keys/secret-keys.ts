import type pg from 'pg';
import type { Hsm } from '../../hsm/hsm.ts';
import type { Queryable } from '../db/pool.ts';
import { required } from '../required.ts';

/** What the gateway's HSM secret (AES) keys are for: today, encrypting TOTP secrets. */
export type SecretKeyPurpose = 'factor-secrets';
const PURPOSES: readonly SecretKeyPurpose[] = ['factor-secrets'];

/** Advisory lock (one namespace with the rotation locks' key, another slot) so two processes never both generate. */
const SECRET_KEY_LOCK = [7_273_050, 100];

/**
 * On first run, generate each secret key in the HSM and record its CKA_ID;
 * afterwards, check the token still holds it (a token and a database that do
 * not belong together refuse to start). These keys are not rotated: what they
 * encrypt is re-encrypted only by enrolling again. Returns the labels generated.
 */
export async function ensureSecretKeys(pool: pg.Pool, hsm: Hsm): Promise<string[]> {
  const generated: string[] = [];
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1, $2)', SECRET_KEY_LOCK);
    try {
      for (const purpose of PURPOSES) {
        const known = await secretKeyRow(client, purpose);
        if (known) {
          if (!(await hsm.hasSecretKey(known.hsm_id)))
            throw new Error(
              `secret key ${known.label} (${purpose}) is in the database but not on the HSM token; the token and the database do not belong together`,
            );
          continue;
        }
        const label = `gateway-${purpose}`;
        const id = await hsm.generateSecretKey(label);
        await client.query('INSERT INTO gateway_secret_keys (purpose, hsm_id, label) VALUES ($1, $2, $3)', [
          purpose,
          id,
          label,
        ]);
        generated.push(label);
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1, $2)', SECRET_KEY_LOCK);
    }
  } finally {
    client.release();
  }
  return generated;
}

async function secretKeyRow(
  db: Queryable,
  purpose: SecretKeyPurpose,
): Promise<{ hsm_id: string; label: string } | undefined> {
  const { rows } = await db.query<{ hsm_id: string; label: string }>(
    'SELECT hsm_id, label FROM gateway_secret_keys WHERE purpose = $1',
    [purpose],
  );
  return rows[0];
}

/** The CKA_ID of the secret key for `purpose` (the boot made sure there is one). */
export async function secretKeyId(db: Queryable, purpose: SecretKeyPurpose): Promise<string> {
  return required(await secretKeyRow(db, purpose), `the ${purpose} key created at boot`).hsm_id;
}
