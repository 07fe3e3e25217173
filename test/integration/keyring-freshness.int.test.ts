import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { runKeysRotate } from '../../src/worker/tasks/keys.ts';
import { Keyring, KEYRING_MAX_AGE_MS } from '../../src/keys/keyring.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('keyring freshness across processes', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ KEY_PREPUBLISH: '1h', KEY_SIG_ROTATION: '90d' });
  });
  afterAll(async () => gw?.close());

  it('a rotation by one process reaches another through fresh() once its rows are older than KEYRING_MAX_AGE_MS', async () => {
    const ctx = gw.app.ctx;
    // Another process's keyring on the same database and token.
    const other = new Keyring(ctx.pool, ctx.hsm);
    await other.reload();
    const before = other.signer('sig').kid;

    await runKeysRotate(ctx, { use: 'sig', now: true, requestedBy: 'test' });
    const after = ctx.keyring.signer('sig').kid;
    expect(after).not.toBe(before); // the rotating process uses the new key at once

    expect((await other.fresh()).signer('sig').kid).toBe(before); // younger than the bound: no reload
    await sleep(KEYRING_MAX_AGE_MS + 100);
    expect((await other.fresh()).signer('sig').kid).toBe(after);
    expect(other.jwks()).toEqual(ctx.keyring.jwks());
  }, 60_000);
});
