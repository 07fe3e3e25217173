import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitPool, endPool } from '../../src/db/pool.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

describe('group commits write on connections of their own that plan generically', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(async () => gw?.close());

  it('the companion pool plans every statement generically; the main pool keeps the server default', async () => {
    const { pool } = gw.app.ctx;
    expect(commitPool(pool)).not.toBe(pool);
    const mode = async (p: typeof pool) => (await p.query('SHOW plan_cache_mode')).rows[0].plan_cache_mode;
    expect(await mode(commitPool(pool))).toBe('force_generic_plan');
    expect(await mode(pool)).toBe('auto');
  });

  it('a batch statement is planned once per connection: its later runs use the generic plan', async () => {
    const client = await commitPool(gw.app.ctx.pool).connect();
    try {
      for (let i = 0; i < 3; i++)
        await client.query({
          name: 'commit-pool-probe',
          text: 'SELECT count(*) FROM unnest($1::text[])',
          values: [['a']],
        });
      const { rows } = await client.query(
        `SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = 'commit-pool-probe'`,
      );
      expect(rows[0]).toEqual({ generic_plans: '3', custom_plans: '0' });
    } finally {
      client.release();
    }
  });

  it('ending the pool ends its companion', async () => {
    const { createPool } = await import('../../src/db/pool.ts');
    const pool = createPool(gw.app.ctx.pool.options.connectionString as string, { warn: () => undefined });
    await commitPool(pool).query('SELECT 1');
    await endPool(pool);
    expect(commitPool(pool).ended).toBe(true);
    expect(commitPool(pool).totalCount).toBe(0);
  });
});
