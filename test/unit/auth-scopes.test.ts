import { describe, expect, it } from 'vitest';
import { hasAnyScope, isValidScope, parseScopes, scopeSatisfies, scopeWithin } from '../../src/auth/scopes.ts';
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

describe('SMART v2 scopes, mapped onto the same permissions as v1', () => {
  it.each([
    ['system/Bundle.c', 'system/Bundle.write', true],
    ['system/Bundle.cruds', 'system/Bundle.write', true],
    ['system/*.c', 'system/Bundle.write', true],
    ['system/*.cud', 'system/*.write', true],
    ['system/Bundle.u', 'system/Bundle.write', false],
    ['system/Bundle.d', 'system/Bundle.write', false],
    ['system/Bundle.r', 'system/Bundle.write', false],
    ['system/*.rs', 'system/*.read', true],
    ['system/*.r', 'system/*.read', false],
    ['system/*.s', 'system/*.read', false],
    ['system/Bundle.rs', 'system/*.read', false],
    ['system/*.rs', 'system/AuditEvent.read', false],
    ['system/*.cruds', 'system/AuditEvent.read', false],
    ['system/AuditEvent.rs', 'system/AuditEvent.read', true],
    ['system/*.cruds', 'system/gateway.admin', false],
  ])('%s satisfies %s: %s', (granted, required, expected) => {
    expect(scopeSatisfies(granted, required)).toBe(expected);
  });

  it('grants add up: .r and .s together are .rs', () => {
    expect(hasAnyScope(['system/*.r', 'system/*.s'], ['system/*.read'])).toBe(true);
    expect(hasAnyScope(['system/*.r'], ['system/*.read'])).toBe(false);
  });

  it.each([
    'system/Bundle.c',
    'system/*.rs',
    'system/Bundle.cruds',
    'system/AuditEvent.rs',
    'system/Patient.s',
    'system/*.cud',
  ])('accepts the v2 scope %s', (scope) => {
    expect(isValidScope(scope)).toBe(true);
  });

  it.each([
    'system/Bundle.sr',
    'system/Bundle.rc',
    'system/Bundle.cc',
    'system/Bundle.',
    'system/Bundle.readc',
    'system/Bundle.rw',
    'system/Bundle.x',
    'system/*.rs?category=laboratory',
    'system/gateway.cruds',
    'system/gateway.r',
    'patient/*.rs',
    'user/Bundle.c',
    'openid',
    'launch',
    'offline_access',
  ])('refuses %s', (scope) => {
    expect(isValidScope(scope)).toBe(false);
  });

  it.each([
    [['system/Bundle.write'], 'system/Bundle.c', true],
    [['system/Bundle.write'], 'system/Bundle.cud', true],
    [['system/Bundle.write'], 'system/Bundle.cruds', false],
    [['system/Bundle.c'], 'system/Bundle.write', false],
    [['system/Bundle.c'], 'system/Bundle.c', true],
    [['system/*.read'], 'system/*.rs', true],
    [['system/*.read'], 'system/Bundle.rs', true],
    [['system/*.read'], 'system/Bundle.r', true],
    [['system/*.read'], 'system/*.cruds', false],
    [['system/*.read'], 'system/AuditEvent.rs', false],
    [['system/*.rs'], 'system/*.read', true],
    [['system/*.write'], 'system/Bundle.write', true],
    [['system/*.write'], 'system/*.*', false],
    [['system/*.*'], 'system/gateway.admin', false],
    [['system/Bundle.c', 'system/Bundle.u', 'system/Bundle.d'], 'system/Bundle.write', true],
    [['system/*.read'], 'system/*.rs?category=x', false],
  ])('registered %j may be granted %s: %s', (registered, requested, expected) => {
    expect(scopeWithin(registered, requested)).toBe(expected);
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
