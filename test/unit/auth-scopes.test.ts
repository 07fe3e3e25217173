import { describe, expect, it } from 'vitest';
import { hasAnyScope, isValidScope, parseScopes, scopeSatisfies } from '../../src/auth/scopes.ts';
import { RateLimiter } from '../../src/auth/rate-limit.ts';

describe('scope matching', () => {
  it.each([
    ['system/Bundle.write', 'system/Bundle.write', true],
    ['system/*.write', 'system/Bundle.write', true],
    ['system/*.read', 'system/Bundle.read', true],
    ['system/*.read', 'system/Bundle.write', false],
    ['system/Bundle.read', 'system/*.read', false],
    ['system/*.read', 'system/AuditEvent.read', false],
    ['system/*.*', 'system/gateway.admin', false],
    ['system/AuditEvent.read', 'system/AuditEvent.read', true],
    ['system/Bundle.*', 'system/Bundle.write', true],
    ['user/*.read', 'user/*.read', true],
    ['patient/*.read', 'system/Patient.read', false],
  ])('%s satisfies %s: %s', (granted, required, expected) => {
    expect(scopeSatisfies(granted, required)).toBe(expected);
  });

  it('any of several', () => {
    expect(hasAnyScope(['system/*.read'], ['system/Bundle.write', 'system/Bundle.read'])).toBe(true);
    expect(hasAnyScope([], ['system/Bundle.read'])).toBe(false);
  });

  it('validates and parses scope strings', () => {
    expect(isValidScope('system/Bundle.write')).toBe(true);
    expect(isValidScope('patient/Bundle.write')).toBe(false);
    expect(isValidScope('system/../x.read')).toBe(false);
    expect(parseScopes(' system/*.read  system/*.read system/Bundle.write ')).toEqual([
      'system/*.read',
      'system/Bundle.write',
    ]);
  });
});

describe('RateLimiter', () => {
  it('allows a minute of requests at once, then refuses with a Retry-After, then refills', () => {
    let now = 0;
    const rl = new RateLimiter(60, () => now);
    for (let i = 0; i < 60; i++) expect(rl.take('a').allowed).toBe(true);
    const refused = rl.take('a');
    expect(refused).toEqual({ allowed: false, retryAfter: 1 });
    expect(rl.take('b').allowed).toBe(true);
    now += 1000;
    expect(rl.take('a').allowed).toBe(true);
    expect(rl.take('a').allowed).toBe(false);
  });

  it('honours a per-client limit and 0 = unlimited', () => {
    const rl = new RateLimiter(0, () => 0);
    for (let i = 0; i < 1000; i++) expect(rl.take('x').allowed).toBe(true);
    expect(rl.take('y', 1).allowed).toBe(true);
    const r = rl.take('y', 1);
    expect(r.allowed).toBe(false);
    expect(r.retryAfter).toBe(60);
  });
});
