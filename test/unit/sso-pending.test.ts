import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { mapRoles, openPending, sealPending, type PendingLogin, type SsoClient } from '../../src/auth/sso.ts';

const sso = { cookieKey: Buffer.alloc(32, 7) } as SsoClient;
const other = { cookieKey: Buffer.alloc(32, 8) } as SsoClient;
const NOW = 1_800_000_000_000;
const pending: PendingLogin = { state: 's', nonce: 'n', verifier: 'v', page: 'audit', exp: NOW + 60_000 };

describe('the pending single sign-on cookie', () => {
  it('opens what this gateway sealed, before it expires', () => {
    expect(openPending(sso, sealPending(sso, pending), NOW)).toEqual(pending);
  });
  it('refuses an expired, forged, altered or absent cookie', () => {
    expect(openPending(sso, sealPending(sso, pending), pending.exp)).toBeUndefined();
    expect(openPending(sso, sealPending(other, pending), NOW)).toBeUndefined();
    const [, tag] = sealPending(sso, pending).split('.');
    const altered = Buffer.from(JSON.stringify({ ...pending, nonce: 'mine' })).toString('base64url');
    expect(openPending(sso, `${altered}.${tag}`, NOW)).toBeUndefined();
    expect(openPending(sso, undefined, NOW)).toBeUndefined();
    expect(openPending(sso, 'garbage', NOW)).toBeUndefined();
  });
});

describe('role mapping', () => {
  const cfg = loadConfig({ OIDC_ROLE_CLAIM: 'roles', OIDC_OPERATOR_ROLE: 'ops', OIDC_COMPLIANCE_ROLE: 'cmp' });
  it('grants the configured values, from a list or one value', () => {
    expect(mapRoles(cfg, ['x', 'ops', 'cmp'])).toEqual(['compliance', 'operator']);
    expect(mapRoles(cfg, 'ops')).toEqual(['operator']);
    expect(mapRoles(cfg, ['gateway-operators'])).toEqual([]);
    expect(mapRoles(cfg, { ops: true })).toEqual([]);
    expect(mapRoles(cfg, undefined)).toEqual([]);
  });
  it('turns local sign-in off by default only when an issuer is set', () => {
    expect(cfg.localLogin).toBe(true);
    const sso = { OIDC_ISSUER: 'https://idp.example', OIDC_CLIENT_ID: 'gw', OIDC_CLIENT_SECRET: 'x' };
    expect(loadConfig(sso).localLogin).toBe(false);
    expect(loadConfig({ ...sso, LOCAL_LOGIN: 'on' }).localLogin).toBe(true);
    expect(() => loadConfig({ OIDC_ISSUER: 'https://idp.example' })).toThrow(/OIDC_CLIENT_ID/);
  });
});
