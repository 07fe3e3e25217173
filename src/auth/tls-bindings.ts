import { X509Certificate, createHash } from 'node:crypto';
import type { Queryable } from '../db/pool.ts';
import { GatewayError } from '../errors.ts';
import { required } from '../required.ts';
import { isPlainIdentifier } from '../ids.ts';

/** Mutual TLS on /inbox: which partner a peer certificate (by SHA-256 of its DER) speaks for. */
export interface TlsBinding {
  partnerId: string;
  certSha256: string;
  createdAt?: string;
}

export const certSha256 = (der: Buffer) => createHash('sha256').update(der).digest('hex');

export async function bindPartnerCertificate(
  db: Queryable,
  input: { partnerId: unknown; certPem?: unknown; certSha256?: unknown },
): Promise<TlsBinding> {
  if (!isPlainIdentifier(input.partnerId) || input.partnerId.length > 500)
    throw new GatewayError('INVALID_VALUE', 'partner_id is required: a partner id without control characters', {
      expression: 'partner_id',
    });
  let sha: string;
  if (typeof input.certPem === 'string') {
    try {
      sha = certSha256(new X509Certificate(input.certPem).raw);
    } catch {
      throw new GatewayError('INVALID_VALUE', 'cert_pem is not a PEM X.509 certificate', { expression: 'cert_pem' });
    }
  } else if (typeof input.certSha256 === 'string' && /^[0-9a-fA-F:]{64,95}$/.test(input.certSha256)) {
    sha = input.certSha256.replace(/:/g, '').toLowerCase();
    if (sha.length !== 64)
      throw new GatewayError('INVALID_VALUE', 'cert_sha256 must be 64 hex digits', { expression: 'cert_sha256' });
  } else {
    throw new GatewayError('INVALID_VALUE', 'give cert_pem or cert_sha256 (hex SHA-256 of the DER certificate)', {
      expression: 'cert_pem',
    });
  }
  const { rows } = await db.query<{ created_at: Date }>(
    `INSERT INTO partner_tls_bindings (cert_sha256, partner_id) VALUES ($1, $2)
     ON CONFLICT (cert_sha256) DO UPDATE SET partner_id = EXCLUDED.partner_id RETURNING created_at`,
    [sha, input.partnerId],
  );
  return {
    partnerId: input.partnerId,
    certSha256: sha,
    createdAt: required(rows[0], 'the row INSERT ... RETURNING wrote').created_at.toISOString(),
  };
}

export async function partnerForCertificate(db: Queryable, sha: string): Promise<string | undefined> {
  const { rows } = await db.query<{ partner_id: string }>(
    'SELECT partner_id FROM partner_tls_bindings WHERE cert_sha256 = $1',
    [sha],
  );
  return rows[0]?.partner_id;
}

export async function listTlsBindings(db: Queryable): Promise<TlsBinding[]> {
  const { rows } = await db.query<{ partner_id: string; cert_sha256: string; created_at: Date }>(
    'SELECT * FROM partner_tls_bindings ORDER BY partner_id, created_at',
  );
  return rows.map((r) => ({
    partnerId: r.partner_id,
    certSha256: r.cert_sha256,
    createdAt: r.created_at.toISOString(),
  }));
}

/** Returns the partner the certificate was bound to, or undefined. */
export async function unbindCertificate(db: Queryable, sha: string): Promise<string | undefined> {
  const { rows } = await db.query<{ partner_id: string }>(
    'DELETE FROM partner_tls_bindings WHERE cert_sha256 = $1 RETURNING partner_id',
    [sha.toLowerCase()],
  );
  return rows[0]?.partner_id;
}
