import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestPki {
  dir: string;
  caFile: string;
  ca: Buffer;
  serverCertFile: string;
  serverKeyFile: string;
  /** Issued by the test CA. */
  client: { cert: Buffer; key: Buffer; certFile: string };
  /** Self-signed: not from the CA. */
  stranger: { cert: Buffer; key: Buffer; certFile: string };
}

const openssl = (args: string[], cwd: string) =>
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });

function issue(dir: string, name: string, subject: string, ext: string, signer?: { cert: string; key: string }): void {
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`], dir);
  writeFileSync(join(dir, `${name}.ext`), ext);
  if (!signer) {
    openssl(
      [
        'req',
        '-x509',
        '-new',
        '-key',
        `${name}.key`,
        '-subj',
        subject,
        '-days',
        '2',
        '-out',
        `${name}.crt`,
        '-extensions',
        'v3',
        '-config',
        `${name}.ext`,
      ],
      dir,
    );
    return;
  }
  openssl(['req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`], dir);
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      signer.cert,
      '-CAkey',
      signer.key,
      '-CAcreateserial',
      '-days',
      '2',
      '-out',
      `${name}.crt`,
      '-extfile',
      `${name}.ext`,
      '-extensions',
      'v3',
    ],
    dir,
  );
}

/** A throwaway CA, a server certificate for 127.0.0.1/localhost, a client certificate from the CA and a stranger's. */
export function createTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'gw-test-pki-'));
  const base = '[req]\ndistinguished_name=dn\n[dn]\n';
  issue(
    dir,
    'ca',
    '/CN=Test Partner CA',
    `${base}[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n`,
  );
  const ca = { cert: 'ca.crt', key: 'ca.key' };
  issue(
    dir,
    'server',
    '/CN=localhost',
    '[v3]\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n',
    ca,
  );
  issue(dir, 'client', '/CN=partner-gateway', '[v3]\nextendedKeyUsage=clientAuth\n', ca);
  issue(dir, 'stranger', '/CN=partner-gateway', `${base}[v3]\nextendedKeyUsage=clientAuth\n`);
  const read = (f: string) => readFileSync(join(dir, f));
  return {
    dir,
    caFile: join(dir, 'ca.crt'),
    ca: read('ca.crt'),
    serverCertFile: join(dir, 'server.crt'),
    serverKeyFile: join(dir, 'server.key'),
    client: { cert: read('client.crt'), key: read('client.key'), certFile: join(dir, 'client.crt') },
    stranger: { cert: read('stranger.crt'), key: read('stranger.key'), certFile: join(dir, 'stranger.crt') },
  };
}
