import { readFileSync } from 'node:fs';
import type { SecureContextOptions, TLSSocket } from 'node:tls';
import type { Config } from '../config.ts';
import type { Queryable } from '../db/pool.ts';
import { certSha256, partnerForCertificate } from './tls-bindings.ts';

export interface HttpsOptions extends SecureContextOptions {
  requestCert?: boolean;
  rejectUnauthorized?: boolean;
}

type TlsConfig = Pick<Config, 'tlsCertFile' | 'tlsKeyFile' | 'tlsMinVersion' | 'tlsClientCaFile'>;

/**
 * Options for an HTTPS listener, or undefined for plain HTTP (the embedded
 * default on loopback). With a client CA the server asks every peer for a
 * certificate but does not reject at the handshake: only /inbox requires one,
 * and that check (with the partner binding) runs per request.
 */
export function httpsOptions(config: TlsConfig): HttpsOptions | undefined {
  if (!config.tlsCertFile || !config.tlsKeyFile) return undefined;
  const read = (file: string, what: string) => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new Error(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
        cause: err,
      });
    }
  };
  return {
    cert: read(config.tlsCertFile, 'TLS_CERT_FILE'),
    key: read(config.tlsKeyFile, 'TLS_KEY_FILE'),
    minVersion: config.tlsMinVersion,
    ...(config.tlsClientCaFile
      ? { ca: read(config.tlsClientCaFile, 'TLS_CLIENT_CA_FILE'), requestCert: true, rejectUnauthorized: false }
      : {}),
  };
}

export type PeerCheck =
  | { ok: true; partnerId: string; certSha256: string }
  | {
      ok: false;
      status: 401 | 403;
      reason: 'no_client_certificate' | 'certificate_untrusted' | 'certificate_not_bound';
      certSha256?: string;
    };

/** A peer certificate issued by the client CA and bound to a partner. */
export async function checkPeerCertificate(db: Queryable, socket: TLSSocket | undefined): Promise<PeerCheck> {
  if (!socket || typeof socket.getPeerCertificate !== 'function')
    return { ok: false, status: 401, reason: 'no_client_certificate' };
  const cert = socket.getPeerCertificate();
  if (!cert || !cert.raw) return { ok: false, status: 401, reason: 'no_client_certificate' };
  const sha = certSha256(cert.raw);
  if (!socket.authorized) return { ok: false, status: 401, reason: 'certificate_untrusted', certSha256: sha };
  const partnerId = await partnerForCertificate(db, sha);
  if (!partnerId) return { ok: false, status: 403, reason: 'certificate_not_bound', certSha256: sha };
  return { ok: true, partnerId, certSha256: sha };
}
