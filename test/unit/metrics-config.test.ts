import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { cached } from '../../src/metrics/cached.ts';

describe('METRICS_LISTEN', () => {
  it('defaults to the main listener (admin scope)', () => {
    expect(loadConfig({}).metricsListen).toEqual({ mode: 'main' });
  });

  it.each([
    ['off', { mode: 'off' }],
    ['main', { mode: 'main' }],
    ['127.0.0.1:9464', { mode: 'listen', host: '127.0.0.1', port: 9464 }],
    ['[::1]:9464', { mode: 'listen', host: '::1', port: 9464 }],
    ['metrics.internal:9100', { mode: 'listen', host: 'metrics.internal', port: 9100 }],
  ])('reads %s', (raw, expected) => {
    expect(loadConfig({ METRICS_LISTEN: raw }).metricsListen).toEqual(expected);
  });

  it.each(['on', '9464', '127.0.0.1:', '127.0.0.1:0', '127.0.0.1:70000', 'http://127.0.0.1:9464'])(
    'refuses %s and names the variable',
    (raw) => {
      expect(() => loadConfig({ METRICS_LISTEN: raw })).toThrow(ConfigError);
      try {
        loadConfig({ METRICS_LISTEN: raw });
      } catch (err) {
        expect((err as ConfigError).problems.join('\n')).toContain('METRICS_LISTEN');
      }
    },
  );
});

describe('the state cache', () => {
  it('answers from one load within its time, and one load at a time', async () => {
    let clock = 0;
    let loads = 0;
    let release: (() => void) | undefined;
    const read = cached(
      () =>
        new Promise<number>((resolve) => {
          loads++;
          release = () => resolve(loads);
        }),
      5_000,
      () => clock,
    );
    const storm = [read(), read(), read()];
    release?.();
    expect(await Promise.all(storm)).toEqual([1, 1, 1]);
    clock = 4_999;
    expect(await read()).toBe(1);
    clock = 5_000;
    const next = read();
    release?.();
    expect(await next).toBe(2);
    expect(loads).toBe(2);
  });

  it('does not keep a failed load', async () => {
    let fail = true;
    const read = cached(async () => {
      if (fail) throw new Error('database unavailable');
      return 'ok';
    }, 5_000);
    await expect(read()).rejects.toThrow('database unavailable');
    fail = false;
    expect(await read()).toBe('ok');
  });
});
