import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadEmbeddedPostgres } from '../../src/db/embedded.ts';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { migrate } from '../../src/db/migrate.ts';
import { freePort } from './ports.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
    pgTemplate: string;
  }
}

export const TEMPLATE_DB = 'gw_template';

/**
 * One real PostgreSQL for the whole run. The schema is migrated once into a
 * template database; each test file clones it (CREATE DATABASE ... TEMPLATE),
 * which takes milliseconds.
 */
export default async function setup(project: TestProject) {
  const runDir = useRunTmpDir();
  const dir = mkdtempSync(join(tmpdir(), 'gw-test-pg-'));
  chmodSync(dir, 0o755); // the postgres OS user must reach it when we run as root
  const port = await freePort();
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password: 'test',
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'max_connections=400',
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
    ],
    onLog: () => undefined,
    onError: () => undefined,
  });
  await server.initialise();
  await server.start();
  const adminUrl = `postgres://postgres:test@127.0.0.1:${port}/postgres`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${TEMPLATE_DB}`);
  await admin.end();
  const pool = new pg.Pool({ connectionString: `postgres://postgres:test@127.0.0.1:${port}/${TEMPLATE_DB}` });
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  await migrate(pool);
  await pool.end();
  project.provide('pgAdminUrl', adminUrl);
  project.provide('pgTemplate', TEMPLATE_DB);
  return async () => {
    await server.stop();
    rmSync(runDir, { recursive: true, force: true });
  };
}

/**
 * Points TMPDIR at a directory of this run, which the test forks inherit, so
 * every token, data dir and key file a test makes with os.tmpdir() is removed
 * in one go at the end, even when a test fails before its own cleanup.
 */
function useRunTmpDir(): string {
  const runDir = mkdtempSync(join(tmpdir(), 'gw-test-run-'));
  chmodSync(runDir, 0o755); // the postgres OS user walks through it to its data dir
  process.env.TMPDIR = runDir;
  return runDir;
}
