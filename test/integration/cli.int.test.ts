import { describe, expect, it } from 'vitest';
import { createTestDatabase } from '../helpers/db.ts';
import { createTestToken } from '../helpers/hsm.ts';
import { cleanEnv, runCli } from '../helpers/cli.ts';

describe('the gateway command', () => {
  it('lists its commands and has --help on every subcommand', async () => {
    const top = await runCli(['--help'], cleanEnv());
    expect(top.code).toBe(0);
    const names = [...top.stdout.matchAll(/^ {2}(\w+) {2,}/gm)].map((m) => m[1]!);
    expect(names).toEqual(expect.arrayContaining(['start', 'serve', 'worker', 'migrate', 'keys']));
    for (const name of names) {
      const sub = await runCli([name, '--help'], cleanEnv());
      expect(sub.code, name).toBe(0);
      expect(sub.stdout, name).toContain(`gateway ${name}`);
    }
  });

  it('refuses an unknown command with usage', async () => {
    const r = await runCli(['frobnicate'], cleanEnv());
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command');
  });

  it('exits non-zero on a bad configuration, naming the variable and the fix', async () => {
    const r = await runCli(['start'], cleanEnv({ PORT: 'eighty', LOG_LEVEL: 'loud' }));
    expect(r.code).toBe(78);
    expect(r.stderr).toContain('PORT');
    expect(r.stderr).toContain('LOG_LEVEL');
    expect(r.stderr).toContain('Fix:');
  });

  it('refuses to start with a wrong HSM PIN, saying so', async () => {
    const token = createTestToken();
    const r = await runCli(
      ['serve'],
      cleanEnv({
        DATABASE_URL: await createTestDatabase(),
        HSM_MODULE: token.library,
        HSM_TOKEN_LABEL: token.label,
        HSM_PIN: 'wrong-pin',
        SOFTHSM2_CONF: process.env.SOFTHSM2_CONF!,
        PORT: '0',
      }),
    );
    expect(r.code).toBe(69);
    expect(r.stderr).toContain('HSM_LOGIN_FAILED');
    expect(r.stderr).toContain('CKR_PIN_INCORRECT');
  });

  it('names a missing PKCS#11 library', async () => {
    const r = await runCli(
      ['serve'],
      cleanEnv({
        DATABASE_URL: await createTestDatabase(),
        HSM_MODULE: '/nonexistent/libpkcs11.so',
        HSM_PIN: '1',
        PORT: '0',
      }),
    );
    expect(r.code).toBe(69);
    expect(r.stderr).toContain('/nonexistent/libpkcs11.so');
  });

  it('refuses an unknown token label', async () => {
    createTestToken();
    const r = await runCli(
      ['serve'],
      cleanEnv({
        DATABASE_URL: await createTestDatabase(),
        HSM_MODULE: '/usr/lib/softhsm/libsofthsm2.so',
        HSM_TOKEN_LABEL: 'no-such-token',
        HSM_PIN: '1234',
        SOFTHSM2_CONF: process.env.SOFTHSM2_CONF!,
        PORT: '0',
      }),
    );
    expect(r.code).toBe(69);
    expect(r.stderr).toContain('no-such-token');
  });

  it('migrates an existing database idempotently', async () => {
    const env = cleanEnv({ DATABASE_URL: await createTestDatabase() });
    const r = await runCli(['migrate'], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('up to date');
  });
});
