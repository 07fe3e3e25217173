import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, configTable } from '../../src/config.ts';

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected the configuration to be refused');
}

describe('configuration', () => {
  it('has embedded defaults that need no variables at all', () => {
    const config = loadConfig({});
    expect(config.port).toBe(8080);
    expect(config.host).toBe('127.0.0.1');
    expect(config.databaseUrl).toBeUndefined();
    expect(config.hsmModule).toBeUndefined();
    expect(config.baseUrl).toBe('http://127.0.0.1:8080');
    expect(config.org).toBe(config.baseUrl);
    expect(config.dataDir.endsWith('/var')).toBe(true);
  });

  it.each([
    [{ PORT: 'eighty' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL'],
    [{ PUBLIC_URL: 'not a url' }, 'PUBLIC_URL'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ HSM_SESSIONS: '0' }, 'HSM_SESSIONS'],
    [{ DELIVERY_TIMEOUT: 'soon' }, 'DELIVERY_TIMEOUT'],
    [{ HSM_KDF: 'magic' }, 'HSM_KDF'],
  ])('refuses %j and names %s with a fix', (env, variable) => {
    const [problem, ...rest] = problems(env);
    expect(rest).toEqual([]);
    expect(problem).toContain(variable);
    expect(problem).toContain('Fix:');
  });

  it('reports every bad variable at once', () => {
    expect(problems({ PORT: 'x', LOG_LEVEL: 'y' })).toHaveLength(2);
  });

  it('requires a PIN when an external HSM module is configured', () => {
    expect(problems({ HSM_MODULE: '/usr/lib/some-hsm.so' })[0]).toContain('HSM_PIN_FILE');
  });

  it('reads the PIN from HSM_PIN_FILE and names an unreadable file', () => {
    expect(problems({ HSM_MODULE: '/x.so', HSM_PIN_FILE: '/nonexistent/pin' })[0]).toContain('/nonexistent/pin');
  });

  it('parses durations', () => {
    expect(loadConfig({ DELIVERY_TIMEOUT: '250ms', DELIVERY_HORIZON: '2d' })).toMatchObject({
      deliveryTimeout: 250,
      deliveryHorizon: 2 * 86_400_000,
    });
  });

  it('documents every variable in one table', () => {
    const table = configTable();
    for (const v of [
      'PORT',
      'HOST',
      'PUBLIC_URL',
      'ORG_ID',
      'DATABASE_URL',
      'DATA_DIR',
      'HSM_MODULE',
      'HSM_TOKEN_LABEL',
      'HSM_PIN',
      'HSM_PIN_FILE',
      'HSM_SESSIONS',
      'LOG_LEVEL',
      'BODY_LIMIT',
    ]) {
      expect(table).toContain(`\`${v}\``);
    }
  });
});
