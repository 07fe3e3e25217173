import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pkcs11js } from '../../hsm/module.ts';
import { findObjects, ulong } from '../../hsm/key-store.ts';
import { ckrName } from '../../hsm/errors.ts';
import { addAuditUser } from '../../src/audit/users.ts';
import { secretKeyId } from '../../src/keys/secret-keys.ts';
import { hotp, timeStep } from '../../src/mfa/totp.ts';
import { cleanEnv, runCli } from '../helpers/cli.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

// `gw` requires a second factor (MFA_REQUIRED=on); `relaxed` is a second API process on the same
// database and HSM token that does not (MFA_REQUIRED=off).
let gw: TestGateway;
let relaxed: TestGateway;
const passwords: Record<string, string> = {};
/** officer.ria's recovery codes, as shown once at its TOTP enrolment. */
let recoveryCodes: string[] = [];

interface Entry {
  type: string;
  agent?: { id: string };
  entity?: Array<{ type: string; id: string }>;
  detail?: Record<string, unknown>;
}
const auditSize = async () =>
  Number((await gw.app.ctx.pool.query<{ n: string }>('SELECT count(*) AS n FROM audit_log')).rows[0]!.n);
async function auditSince(since: number, type: string): Promise<Entry[]> {
  const { rows } = await gw.app.ctx.pool.query<{ entry: string }>(
    'SELECT entry FROM audit_log WHERE idx >= $1 ORDER BY idx',
    [since],
  );
  return rows.map((r) => JSON.parse(r.entry) as Entry).filter((e) => e.type === type);
}
const errorCode = (body: { issue?: Array<{ details?: { coding?: Array<{ code: string }> } }> }) =>
  body.issue?.[0]?.details?.coding?.[0]?.code;
const cookieOf = (res: request.Response) => String(res.headers['set-cookie']).split(';')[0]!;

async function signIn(name: string, on: TestGateway = gw) {
  return request(on.app.server).post('/audit/ui/login').set('Origin', on.url).send({ name, password: passwords[name] });
}
const post = (path: string, cookie: string, body: object = {}) =>
  request(gw.app.server).post(path).set('Origin', gw.url).set('Cookie', cookie).send(body);
const failures = async (name: string) =>
  (
    await gw.app.ctx.pool.query<{ failures: number }>('SELECT failures FROM audit_login_failures WHERE name = $1', [
      name,
    ])
  ).rows[0]?.failures ?? 0;
/** Let the backoff of `name` run out, as if its wait had passed. */
const waitOut = (name: string) =>
  gw.app.ctx.pool.query(
    `UPDATE audit_login_failures SET last_failure_at = now() - interval '10 minutes' WHERE name = $1`,
    [name],
  );

beforeAll(async () => {
  gw = await startTestGateway({ MFA_REQUIRED: 'on' });
  relaxed = await startTestGateway({
    DATABASE_URL: gw.databaseUrl,
    HSM_TOKEN_LABEL: gw.token.label,
    HSM_PIN: gw.token.pin,
    MFA_REQUIRED: 'off',
  });
  passwords['officer.ria'] = await addAuditUser(gw.app.ctx.pool, 'officer.ria');
  passwords['operator.ode'] = await addAuditUser(gw.app.ctx.pool, 'operator.ode', 'operator');
  passwords['officer.lee'] = await addAuditUser(gw.app.ctx.pool, 'officer.lee');
}, 120_000);

afterAll(async () => {
  await relaxed?.close();
  await gw?.close();
});

describe('MFA_REQUIRED: a password alone reaches nothing but the enrolment page', () => {
  it('gives a short pending session that every cookie-authenticated route refuses with 403 MFA_ENROLMENT_REQUIRED, audited', async () => {
    const since = await auditSize();
    const login = await signIn('officer.ria');
    expect(login.status).toBe(200);
    expect(login.body).toMatchObject({ user: 'officer.ria', stage: 'enrol', next: '/auth/mfa/' });
    expect(String(login.headers['set-cookie'])).toContain('Max-Age=600');
    const cookie = cookieOf(login);
    const operator = cookieOf(await signIn('operator.ode'));

    const refused: Array<[string, request.Test]> = [
      ['GET /fhir/AuditEvent', request(gw.app.server).get('/fhir/AuditEvent').set('Cookie', cookie)],
      ['GET /fhir/AuditEvent/0', request(gw.app.server).get('/fhir/AuditEvent/0').set('Cookie', cookie)],
      ['GET /audit/checkpoint', request(gw.app.server).get('/audit/checkpoint').set('Cookie', cookie)],
      ['POST /audit/checkpoint', post('/audit/checkpoint', cookie)],
      [
        'GET /audit/proof/inclusion',
        request(gw.app.server).get('/audit/proof/inclusion?index=0&size=1').set('Cookie', cookie),
      ],
      [
        'GET /audit/proof/consistency',
        request(gw.app.server).get('/audit/proof/consistency?from=1&to=2').set('Cookie', cookie),
      ],
      ['GET /audit/export', request(gw.app.server).get('/audit/export').set('Cookie', cookie)],
      ['GET /audit/ui/session', request(gw.app.server).get('/audit/ui/session').set('Cookie', cookie)],
      ['POST /console/deliveries/x/retry', post('/console/deliveries/d-1/retry', operator)],
      ['POST /console/partners/x/suspend', post('/console/partners/p-1/suspend', operator)],
      ['POST /console/partners/x/resume', post('/console/partners/p-1/resume', operator)],
    ];
    for (const [route, call] of refused) {
      const res = await call;
      expect({ route, status: res.status, code: errorCode(res.body) }).toEqual({
        route,
        status: 403,
        code: 'MFA_ENROLMENT_REQUIRED',
      });
    }
    // The pages send the browser to the enrolment page instead of showing anything.
    for (const page of ['/audit/ui/', '/console/']) {
      const res = await request(gw.app.server).get(page).set('Cookie', operator);
      expect([page, res.status, res.headers.location]).toEqual([page, 302, '/auth/mfa/']);
    }
    // A second-factor step is not an enrolment.
    expect((await post('/auth/mfa/totp', cookie, { code: '123456' })).status).toBe(409);
    const denied = await auditSince(since, 'authz.denied');
    expect(denied).toHaveLength(refused.length);
    expect(new Set(denied.map((e) => e.detail?.reason))).toEqual(new Set(['mfa_enrolment_required']));
    expect(new Set(denied.map((e) => e.agent?.id))).toEqual(new Set(['officer.ria', 'operator.ode']));
    const passwordStep = await auditSince(since, 'auth.factor-used');
    expect(passwordStep.map((e) => [e.agent?.id, e.detail?.factor, e.detail?.next])).toEqual([
      ['officer.ria', 'password', 'enrol'],
      ['operator.ode', 'password', 'enrol'],
    ]);
    expect(await auditSince(since, 'compliance.login')).toEqual([]);
  });

  it('enrols TOTP over HTTP: the secret is sealed in the HSM, one code activates it and completes the sign-in under a new cookie', async () => {
    const pending = cookieOf(await signIn('officer.ria'));
    const page = await request(gw.app.server).get('/auth/mfa/').set('Cookie', pending).expect(200);
    expect(page.text).toContain('id="add-passkey"');
    expect((await post('/auth/mfa/totp/enrolment', pending)).status).toBe(201);
    const first = await request(gw.app.server).get('/auth/mfa/').set('Cookie', pending);
    const key = /id="totp-key">([A-Z2-7 ]+)</.exec(first.text)![1]!.replace(/ /g, '');
    // Starting again replaces an unconfirmed secret.
    expect((await post('/auth/mfa/totp/enrolment', pending)).status).toBe(201);
    const page2 = await request(gw.app.server).get('/auth/mfa/').set('Cookie', pending);
    const key2 = /id="totp-key">([A-Z2-7 ]+)</.exec(page2.text)![1]!.replace(/ /g, '');
    expect(key2).not.toBe(key);
    const secret = base32Decode(key2);

    // The row holds AES-GCM ciphertext (20-byte secret + 16-byte tag) and a 12-byte IV, never the secret.
    const { rows } = await gw.app.ctx.pool.query<{ secret_ct: Buffer; secret_iv: Buffer }>(
      "SELECT secret_ct, secret_iv FROM mfa_totp WHERE user_name = 'officer.ria'",
    );
    expect(rows[0]!.secret_ct).toHaveLength(36);
    expect(rows[0]!.secret_iv).toHaveLength(12);
    expect(rows[0]!.secret_ct.includes(secret)).toBe(false);
    const keyId = await secretKeyId(gw.app.ctx.pool, 'factor-secrets');
    const aad = (name: string) => Buffer.from(`totp-secret:${name}`);
    expect(
      (await gw.app.hsm.decrypt(keyId, rows[0]!.secret_iv, aad('officer.ria'), rows[0]!.secret_ct)).equals(secret),
    ).toBe(true);
    // Copied to another account's row it does not open: the account name is the associated data.
    await expect(
      gw.app.hsm.decrypt(keyId, rows[0]!.secret_iv, aad('officer.lee'), rows[0]!.secret_ct),
    ).rejects.toThrow();

    const since = await auditSize();
    const confirmed = await post('/auth/mfa/totp/confirmation', pending, { code: hotp(secret, timeStep(new Date())) });
    expect(confirmed.status).toBe(200);
    expect(confirmed.body.next).toBe('/audit/ui/');
    expect(confirmed.body.recoveryCodes).toHaveLength(10);
    recoveryCodes = confirmed.body.recoveryCodes;
    const full = cookieOf(confirmed);
    expect(full).not.toBe(pending);
    expect(String(confirmed.headers['set-cookie'])).toContain('Max-Age=900');
    // The pending session is gone; the new one reads the audit trail.
    expect((await request(gw.app.server).get('/audit/ui/session').set('Cookie', pending)).status).toBe(401);
    expect((await request(gw.app.server).get('/audit/ui/session').set('Cookie', full)).body.user).toBe('officer.ria');
    expect((await request(gw.app.server).get('/fhir/AuditEvent').set('Cookie', full)).status).toBe(200);
    // One authenticator app per account: another needs a reset first.
    expect((await post('/auth/mfa/totp/enrolment', full)).status).toBe(409);
    const logins = await auditSince(since, 'compliance.login');
    expect(logins.map((e) => [e.agent?.id, e.detail?.factors])).toEqual([['officer.ria', 'password+totp']]);
    // Signed in, the page lists the factors and gives a new set of recovery codes (the old set stops working).
    const factors = await request(gw.app.server).get('/auth/mfa/').set('Cookie', full);
    expect(factors.text).toContain('Authenticator app: enrolled');
    expect(factors.text).toContain('Recovery codes left: 10');
    const renewed = await post('/auth/mfa/recovery-codes', full);
    expect(renewed.status).toBe(200);
    expect(renewed.body.recoveryCodes).toHaveLength(10);
    expect(renewed.body.recoveryCodes).not.toContain(recoveryCodes[0]);
    recoveryCodes = renewed.body.recoveryCodes;
    const stored = await gw.app.ctx.pool.query("SELECT 1 FROM mfa_recovery_codes WHERE user_name = 'officer.ria'");
    expect(stored.rowCount).toBe(10);
    const issued = await auditSince(since, 'auth.factor-enrolled');
    expect(issued.map((e) => [e.detail?.factor, e.detail?.replaced ?? false])).toEqual([
      ['totp', false],
      ['recovery-codes', false],
      ['recovery-codes', true],
    ]);
  });

  it('keeps the TOTP key in the HSM: AES-256, sensitive, never extractable, encrypt and decrypt only', async () => {
    const keyId = await secretKeyId(gw.app.ctx.pool, 'factor-secrets');
    const seen = await gw.app.hsm.withSession((session, p11) => {
      const [key] = findObjects(p11, session, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_ID, value: Buffer.from(keyId, 'hex') },
      ]);
      const attrs = p11.C_GetAttributeValue(session, key!, [
        { type: pkcs11js.CKA_VALUE_LEN },
        { type: pkcs11js.CKA_SENSITIVE },
        { type: pkcs11js.CKA_EXTRACTABLE },
        { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
        { type: pkcs11js.CKA_TOKEN },
        { type: pkcs11js.CKA_WRAP },
        { type: pkcs11js.CKA_UNWRAP },
        { type: pkcs11js.CKA_DERIVE },
        { type: pkcs11js.CKA_ENCRYPT },
        { type: pkcs11js.CKA_DECRYPT },
      ]);
      let value: string;
      try {
        p11.C_GetAttributeValue(session, key!, [{ type: pkcs11js.CKA_VALUE }]);
        value = 'revealed';
      } catch (err) {
        value = ckrName(err) ?? 'refused';
      }
      const flags = attrs.slice(1).map((a) => (a.value as Buffer)[0] === 1);
      return { length: ulong(attrs[0]!.value as Buffer), flags, value };
    });
    expect(seen).toEqual({
      length: 32,
      //      sensitive extractable never-extractable token wrap  unwrap derive encrypt decrypt
      flags: [true, false, true, true, false, false, false, true, true],
      value: 'CKR_ATTRIBUTE_SENSITIVE',
    });
  });

  it('takes a recovery code once in place of the second factor; second-factor failures count toward the same backoff as passwords', async () => {
    const login = await signIn('officer.ria');
    expect(login.body).toMatchObject({ stage: 'second-factor', next: '/auth/mfa/' });
    let pending = cookieOf(login);
    expect(await failures('officer.ria')).toBe(1); // a sign-in counts until it is complete
    const since = await auditSize();
    const wrong = await post('/auth/mfa/recovery-code', pending, { code: 'AAAA-BBBB-CCCC-DDDD' });
    expect(wrong.status).toBe(401);
    expect(await failures('officer.ria')).toBe(2);
    // Entering the password again does not start a fresh run of guesses.
    pending = cookieOf(await signIn('officer.ria'));
    expect(await failures('officer.ria')).toBe(3);
    await waitOut('officer.ria');
    const used = await post('/auth/mfa/recovery-code', pending, { code: recoveryCodes[0]!.toLowerCase() });
    expect(used.status).toBe(200);
    expect(used.body).toMatchObject({ next: '/audit/ui/', recoveryCodesLeft: 9 });
    expect(await failures('officer.ria')).toBe(0);
    const spent = await auditSince(since, 'auth.recovery-code-used');
    expect(spent.map((e) => [e.agent?.id, e.detail?.remaining])).toEqual([['officer.ria', 9]]);
    const failed = await auditSince(since, 'auth.factor-failed');
    expect(failed.map((e) => [e.detail?.factor, e.detail?.reason, e.detail?.failures])).toEqual([
      ['recovery-code', 'wrong_code', 2],
    ]);
    // Spent: the same code does not work twice.
    const again = cookieOf(await signIn('officer.ria'));
    expect((await post('/auth/mfa/recovery-code', again, { code: recoveryCodes[0]! })).status).toBe(401);
  });

  it('without MFA_REQUIRED an account with no factor signs in with its password, and one with a factor still needs it', async () => {
    const plain = await signIn('officer.lee', relaxed);
    expect(plain.status).toBe(200);
    expect(plain.body.stage).toBeUndefined();
    expect((await request(relaxed.app.server).get('/audit/ui/session').set('Cookie', cookieOf(plain))).body.user).toBe(
      'officer.lee',
    );
    await waitOut('officer.ria');
    const strong = await signIn('officer.ria', relaxed);
    expect(strong.body).toMatchObject({ stage: 'second-factor' });
    const probe = await request(relaxed.app.server).get('/fhir/AuditEvent').set('Cookie', cookieOf(strong));
    expect(probe.status).toBe(403);
    expect(errorCode(probe.body)).toBe('SECOND_FACTOR_REQUIRED');
  });

  it('refuses cross-site requests to the second-factor routes, with or without a session, audited', async () => {
    const pending = cookieOf(await signIn('officer.lee'));
    const since = await auditSize();
    const evil = 'https://evil.example';
    const withSession = await request(gw.app.server)
      .post('/auth/mfa/totp/enrolment')
      .set('Origin', evil)
      .set('Cookie', pending)
      .send({});
    const passkey = await request(gw.app.server)
      .post('/auth/mfa/passkey/authentication')
      .set('Origin', evil)
      .set('Cookie', pending)
      .send({});
    const withoutSession = await request(gw.app.server)
      .post('/auth/mfa/passkey/authentication-options')
      .set('Origin', evil)
      .send({});
    const form = await request(gw.app.server)
      .post('/auth/mfa/totp/confirmation')
      .set('Origin', gw.url)
      .set('Cookie', pending)
      .type('form')
      .send('code=123456');
    expect([withSession.status, passkey.status, withoutSession.status, form.status]).toEqual([403, 403, 403, 415]);
    const denied = await auditSince(since, 'authz.denied');
    expect(denied.map((e) => e.detail?.reason)).toEqual(['cross_origin', 'cross_origin', 'cross_origin', 'not_json']);
    expect(await gw.app.ctx.pool.query("SELECT 1 FROM mfa_totp WHERE user_name = 'officer.lee'")).toMatchObject({
      rowCount: 0,
    });
  });

  it('an administrator resets the factors from the CLI, audited with both names; the sessions end and the next sign-in enrols again', async () => {
    const full = cookieOf(await signIn('officer.lee', relaxed));
    const env = cleanEnv({ DATABASE_URL: gw.databaseUrl });
    const since = await auditSize();
    const reset = await runCli(['audit', 'users', 'reset-factors', 'officer.ria'], env);
    expect(reset.code).toBe(0);
    expect(reset.stdout).toContain(
      'reset the second factors of officer.ria: 0 passkey(s), the authenticator app, 9 unused recovery code(s)',
    );
    const entries = await auditSince(since, 'auth.factors-reset');
    expect(entries).toHaveLength(1);
    expect(entries[0]!.agent?.id).toMatch(/^cli:/);
    expect(entries[0]!.entity).toEqual([{ type: 'audit-user', id: 'officer.ria' }]);
    expect(entries[0]!.detail).toMatchObject({ user: 'officer.ria', totp: true, recovery_codes: 9 });
    for (const table of ['mfa_totp', 'mfa_recovery_codes', 'mfa_passkeys', 'audit_sessions']) {
      const { rows } = await gw.app.ctx.pool.query(`SELECT 1 FROM ${table} WHERE user_name = 'officer.ria'`);
      expect([table, rows.length]).toEqual([table, 0]);
    }
    // Another account's session is untouched.
    expect((await request(gw.app.server).get('/audit/ui/session').set('Cookie', full)).status).toBe(200);
    await waitOut('officer.ria');
    expect((await signIn('officer.ria')).body).toMatchObject({ stage: 'enrol' });
    const unknown = await runCli(['audit', 'users', 'reset-factors', 'nobody.here'], env);
    expect(unknown.code).toBe(3);
    const list = await runCli(['audit', 'users', 'list'], env);
    expect(list.stdout).toMatch(/officer\.ria\s/);
  });
});

function base32Decode(text: string): Buffer {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of text) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  return Buffer.from(bits.match(/.{8}/g)!.map((b) => parseInt(b, 2)));
}
