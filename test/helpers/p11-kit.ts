import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestToken } from './hsm.ts';
import { createTestDatabase } from './db.ts';
import { loadConfig, type Config } from '../../src/config.ts';

/** p11-kit's client module: what a gateway loads as HSM_MODULE to reach a token served by `p11-kit server`. */
export const P11_KIT_CLIENT = '/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so';

/**
 * A SoftHSM token served by `p11-kit server` on a Unix socket, as the
 * docker-compose `hsm` service does: the stand-in for a network HSM. Its
 * clients load P11_KIT_CLIENT with P11_KIT_SERVER_ADDRESS set to `address`.
 */
export interface P11KitServer {
  socket: string;
  /** The value of P11_KIT_SERVER_ADDRESS. */
  address: string;
  /** (Again) serve the token on the same socket. */
  start(): Promise<void>;
  /** SIGKILL the server's process group: the device and every connection to it vanish. */
  kill(): Promise<void>;
}

export function p11KitServer(token: TestToken): P11KitServer {
  const socket = join(mkdtempSync(join(tmpdir(), 'gw-p11-kit-')), 'hsm.sock');
  let server: ChildProcess | undefined;
  return {
    socket,
    address: `unix:path=${socket}`,
    start: async () => {
      rmSync(socket, { force: true });
      server = spawn('p11-kit', ['server', '--foreground', '--name', socket, '--provider', token.library, 'pkcs11:'], {
        env: { ...process.env, SOFTHSM2_CONF: join(token.tokenDir, 'softhsm2.conf') },
        stdio: 'ignore',
        detached: true, // own process group: the server forks one child per connection
      });
      for (let i = 0; i < 100 && !existsSync(socket); i++) await sleep(50);
      if (!existsSync(socket)) throw new Error(`p11-kit server did not create ${socket}`);
    },
    kill: async () => {
      const pid = server?.pid;
      if (!pid || server!.exitCode !== null) return;
      const exited = new Promise((resolve) => server!.once('exit', resolve));
      process.kill(-pid, 'SIGKILL');
      await exited;
      server = undefined;
    },
  };
}

/** A gateway's configuration on a fresh test database, its HSM the token behind p11-kit's client module. */
export async function p11KitGatewayConfig(token: TestToken, extra: Record<string, string> = {}): Promise<Config> {
  return loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: await createTestDatabase(),
    DATA_DIR: mkdtempSync(join(tmpdir(), 'gw-test-data-')),
    HSM_MODULE: P11_KIT_CLIENT,
    HSM_TOKEN_LABEL: token.label,
    HSM_PIN: token.pin,
    HSM_SESSIONS: '2',
    ...extra,
  });
}
