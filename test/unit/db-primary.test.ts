import { describe, expect, it } from 'vitest';
import { parseMultiHostUrl } from '../../src/db/primary.ts';
import { isDatabaseUnavailable } from '../../src/db/unavailable.ts';
import { NoPrimaryError } from '../../src/db/primary.ts';
import { loadConfig } from '../../src/config.ts';

describe('multi-host DATABASE_URL', () => {
  it('is one host per entry, the rest of the URL kept, target_session_attrs taken out', () => {
    const m = parseMultiHostUrl(
      'postgres://gw:p%40ss@a:5433,[::1],b/gateway?sslmode=require&target_session_attrs=read-write',
    );
    expect(m?.hosts).toEqual([
      { host: 'a', port: 5433 },
      { host: '::1', port: 5432 },
      { host: 'b', port: 5432 },
    ]);
    expect(m?.targetSessionAttrs).toBe('read-write');
    expect(m?.urlFor({ host: '::1', port: 5432 })).toBe('postgres://gw:p%40ss@[::1]:5432/gateway?sslmode=require');
  });

  it('defaults to read-write, takes any, and refuses what it does not implement', () => {
    expect(parseMultiHostUrl('postgres://a,b/db')?.targetSessionAttrs).toBe('read-write');
    expect(parseMultiHostUrl('postgres://a,b/db?target_session_attrs=any')?.targetSessionAttrs).toBe('any');
    expect(() => parseMultiHostUrl('postgres://a,b/db?target_session_attrs=standby')).toThrow(/not supported/);
  });

  it('leaves a single-host URL to pg', () => {
    expect(parseMultiHostUrl('postgres://gw:x@db:5432/gateway')).toBeUndefined();
  });

  it('is read by the config, and a host that is no host is a config error', () => {
    const env = { DATABASE_URL: 'postgres://gw:x@a:5432,b:5433/gateway?target_session_attrs=read-write' };
    expect(loadConfig(env).databaseUrl).toBe(env.DATABASE_URL);
    expect(() => loadConfig({ DATABASE_URL: 'postgres://gw:x@a:5432,b:nope/gateway' })).toThrow(/DATABASE_URL/);
  });

  it('no primary among the hosts is "unavailable": a 503 and a retry, not a 500', () => {
    expect(isDatabaseUnavailable(new NoPrimaryError('a:5432 is read-only'))).toBe(true);
  });
});
