import { describe, expect, it } from 'vitest';
import { loadConfig, loopbackOnly } from '../../src/config.ts';
import { stageAfterPassword } from '../../src/mfa/policy.ts';
import { base32, hotp, matchingStep, otpauthUri, timeStep } from '../../src/mfa/totp.ts';

// RFC 6238 appendix B: the seeds are ASCII digits, 20, 32 and 64 bytes long; 8-digit codes, 30 s steps.
const SEED = {
  sha1: Buffer.from('12345678901234567890'),
  sha256: Buffer.from('12345678901234567890123456789012'),
  sha512: Buffer.from('1234567890123456789012345678901234567890123456789012345678901234'),
};
const RFC6238: Array<[number, string, string, string]> = [
  [59, '94287082', '46119246', '90693936'],
  [1111111109, '07081804', '68084774', '25091201'],
  [1111111111, '14050471', '67062674', '99943326'],
  [1234567890, '89005924', '91819424', '93441116'],
  [2000000000, '69279037', '90698825', '38618901'],
  [20000000000, '65353130', '77737706', '47863826'],
];

describe('TOTP (RFC 6238) and HOTP (RFC 4226)', () => {
  it.each(RFC6238)('at %i s gives the appendix B codes for SHA-1, SHA-256 and SHA-512', (t, sha1, sha256, sha512) => {
    const step = timeStep(new Date(t * 1000));
    expect(hotp(SEED.sha1, step, 8, 'sha1')).toBe(sha1);
    expect(hotp(SEED.sha256, step, 8, 'sha256')).toBe(sha256);
    expect(hotp(SEED.sha512, step, 8, 'sha512')).toBe(sha512);
  });

  it('gives the RFC 4226 appendix D HOTP values, six digits', () => {
    const codes = Array.from({ length: 10 }, (_, i) => hotp(SEED.sha1, i));
    expect(codes).toEqual([
      '755224',
      '287082',
      '359152',
      '969429',
      '338314',
      '254676',
      '287922',
      '162583',
      '399871',
      '520489',
    ]);
  });

  it('accepts a code of the current step and one step either side, and says which step matched', () => {
    const now = new Date(1_700_000_015_000);
    const step = timeStep(now);
    for (const offset of [-1, 0, 1])
      expect(matchingStep(SEED.sha1, hotp(SEED.sha1, step + offset), now)).toBe(step + offset);
    for (const offset of [-2, 2, 10])
      expect(matchingStep(SEED.sha1, hotp(SEED.sha1, step + offset), now)).toBeUndefined();
  });

  it('refuses codes that are not six digits', () => {
    const now = new Date();
    const good = hotp(SEED.sha1, timeStep(now));
    for (const bad of ['', good.slice(1), `${good}0`, ` ${good}`, good.replace(/\d$/, 'x'), '１２３４５６'])
      expect(matchingStep(SEED.sha1, bad, now)).toBeUndefined();
  });

  it('writes secrets in RFC 4648 base32 (no padding) inside an otpauth:// URI', () => {
    const vectors = {
      '': '',
      f: 'MY',
      fo: 'MZXQ',
      foo: 'MZXW6',
      foob: 'MZXW6YQ',
      fooba: 'MZXW6YTB',
      foobar: 'MZXW6YTBOI',
    };
    for (const [plain, encoded] of Object.entries(vectors)) expect(base32(Buffer.from(plain))).toBe(encoded);
    const uri = new URL(otpauthUri('FHIR gateway gw.example', 'jane.doe', SEED.sha1));
    expect(uri.protocol).toBe('otpauth:');
    expect(uri.host).toBe('totp');
    expect(decodeURIComponent(uri.pathname)).toBe('/FHIR gateway gw.example:jane.doe');
    expect(Object.fromEntries(uri.searchParams)).toEqual({
      secret: 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ',
      issuer: 'FHIR gateway gw.example',
      algorithm: 'SHA1',
      digits: '6',
      period: '30',
    });
  });
});

describe('MFA policy', () => {
  it('gives a password a full session, the second-factor step or enrolment only', () => {
    const none = { passkeys: 0, totp: false, recoveryCodes: 0 };
    expect(stageAfterPassword(none, false)).toBe('full');
    expect(stageAfterPassword(none, true)).toBe('enrol');
    expect(stageAfterPassword({ ...none, totp: true }, false)).toBe('second-factor');
    expect(stageAfterPassword({ ...none, passkeys: 1 }, true)).toBe('second-factor');
    // Recovery codes alone are no second factor.
    expect(stageAfterPassword({ ...none, recoveryCodes: 10 }, true)).toBe('enrol');
  });

  it('requires MFA by default unless both the listener and PUBLIC_URL are loopback', () => {
    expect(loadConfig({}).mfaRequired).toBe(false);
    expect(loadConfig({ HOST: '::1', PUBLIC_URL: 'http://localhost:8080' }).mfaRequired).toBe(false);
    expect(loadConfig({ HOST: '0.0.0.0' }).mfaRequired).toBe(true);
    expect(loadConfig({ HOST: '10.1.2.3' }).mfaRequired).toBe(true);
    // Loopback behind a reverse proxy with a public address is reachable from elsewhere.
    expect(loadConfig({ PUBLIC_URL: 'https://gw.example-hospital.org' }).mfaRequired).toBe(true);
    expect(loadConfig({ HOST: '0.0.0.0', MFA_REQUIRED: 'off' }).mfaRequired).toBe(false);
    expect(loadConfig({ MFA_REQUIRED: 'on' }).mfaRequired).toBe(true);
    expect(() => loadConfig({ MFA_REQUIRED: 'yes' })).toThrow(/MFA_REQUIRED.*Fix:/);
    expect(loopbackOnly('127.0.0.2', 'http://[::1]:8080')).toBe(true);
    expect(loopbackOnly('localhost', 'http://127.0.0.1.example.org')).toBe(false);
  });
});
