import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { openDatabase } from '../../src/runtime/database.ts';

/**
 * Shutdown ends every pooled connection before embedded PostgreSQL stops: a
 * connection still open then is terminated by the server (57P01), which the
 * pool used to log as a warning per connection.
 */
describe('database shutdown', () => {
  it('closes a pool of busy and idle connections, then the server, without a warning', async () => {
    const config = loadConfig({ DATA_DIR: mkdtempSync(join(tmpdir(), 'gw-shutdown-')) });
    const warnings: string[] = [];
    const logger = { info: () => undefined, warn: (_: object, msg: string) => warnings.push(msg) };
    const db = await openDatabase(config, logger);
    // The pool full (20), as a busy gateway holds it, as a serving gateway holds them.
    await Promise.all(Array.from({ length: 20 }, () => db.pool.query('SELECT pg_sleep(0.05)')));
    expect(db.pool.totalCount).toBeGreaterThan(1);
    await db.close();
    await new Promise((r) => setTimeout(r, 200));
    expect(warnings).toEqual([]);
  }, 120_000);
});
