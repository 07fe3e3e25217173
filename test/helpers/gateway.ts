import type { FastifyInstance } from 'fastify';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type Config } from '../../src/config.ts';
import { buildApp, type BuildOptions } from '../../plugins/app.ts';
import { createTestDatabase } from './db.ts';
import { createTestToken, type TestToken } from './hsm.ts';
import { freePort } from './ports.ts';

export interface TestGateway {
  app: FastifyInstance;
  config: Config;
  url: string;
  token: TestToken;
  databaseUrl: string;
  close(): Promise<void>;
}

/**
 * A complete gateway on real PostgreSQL (a fresh database) and a real SoftHSM
 * token, listening on 127.0.0.1. `env` overrides any configuration variable.
 */
export async function startTestGateway(
  env: Record<string, string> = {},
  options: BuildOptions & { listen?: boolean } = {},
): Promise<TestGateway> {
  const token = createTestToken();
  const databaseUrl = env.DATABASE_URL ?? (await createTestDatabase());
  const port = await freePort();
  const config = loadConfig({
    PORT: String(port),
    HOST: '127.0.0.1',
    DATABASE_URL: databaseUrl,
    DATA_DIR: mkdtempSync(join(tmpdir(), 'gw-test-data-')),
    HSM_MODULE: token.library,
    HSM_TOKEN_LABEL: token.label,
    HSM_PIN: token.pin,
    HSM_SESSIONS: '4',
    LOG_LEVEL: 'silent',
    ...env,
  });
  const app = await buildApp(config, { logger: false, ...options });
  if (options.listen !== false) await app.listen({ port, host: '127.0.0.1' });
  return { app, config, url: config.baseUrl, token, databaseUrl, close: () => app.close() };
}
