import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOGIN_POLICY } from '../../src/audit/login-backoff.ts';
import { addAuditUser } from '../../src/audit/users.ts';
import { cleanEnv, runCli } from '../helpers/cli.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

// Two API processes' worth of gateway on one database: the backoff must be shared, not per instance.
let a: TestGateway;
let b: TestGateway;
let lockPassword: string;
let otherPassword: string;

beforeAll(async () => {
  a = await startTestGateway();
  b = await startTestGateway({
    DATABASE_URL: a.databaseUrl,
    HSM_TOKEN_LABEL: a.token.label,
    HSM_PIN: a.token.pin,
  });
  lockPassword = await addAuditUser(a.app.ctx.pool, 'officer.lock');
  otherPassword = await addAuditUser(a.app.ctx.pool, 'officer.other');
}, 120_000);
afterAll(async () => {
  await b?.close();
  await a?.close();
});

// Every request comes from 127.0.0.1: officers behind one reverse proxy.
const login = (gw: TestGateway, name: string, password: string) =>
  request(gw.app.server).post('/audit/ui/login').send({ name, password });
/** Let the backoff of `name` run out, as if its wait had passed. */
const waitOut = (name: string) =>
  a.app.ctx.pool.query(
    `UPDATE audit_login_failures SET last_failure_at = now() - interval '10 minutes' WHERE name = $1`,
    [name],
  );
/** As if the last failure of `name` had just happened (so a slow machine cannot outrun the first wait). */
const justFailed = (name: string) =>
  a.app.ctx.pool.query(`UPDATE audit_login_failures SET last_failure_at = now() WHERE name = $1`, [name]);
const failureDetails = async (name: string) =>
  (
    await a.app.ctx.pool.query<{ entry: string }>(
      `SELECT entry FROM audit_log WHERE type = 'auth.failure' AND entry LIKE $1 ORDER BY idx`,
      [`%"${name}"%`],
    )
  ).rows.map((r) => JSON.parse(r.entry).detail as Record<string, unknown>);

describe('sign-in backoff and lockout per account, shared by every process', () => {
  it('slows an account after its free failures, on both instances; a correct password is not even tried then', async () => {
    for (let i = 0; i < LOGIN_POLICY.freeFailures; i++)
      expect((await login(i % 2 ? b : a, 'officer.lock', `guess-${i}`)).status).toBe(401);
    await justFailed('officer.lock');
    const slowed = await login(b, 'officer.lock', lockPassword);
    expect(slowed.status).toBe(429);
    expect(slowed.body.resourceType).toBe('OperationOutcome');
    expect(Number(slowed.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(slowed.headers['set-cookie']).toBeUndefined();
    expect(await failureDetails('officer.lock')).toContainEqual(expect.objectContaining({ reason: 'backoff' }));
    // A name that does not exist is slowed alike: the answers tell no names apart.
    for (let i = 0; i < LOGIN_POLICY.freeFailures; i++)
      expect((await login(a, 'nobody.here', `guess-${i}`)).status).toBe(401);
    await justFailed('nobody.here');
    expect((await login(b, 'nobody.here', 'guess')).status).toBe(429);
  });

  it('locks the account at the lockout count; then even the right password gets the wrong-password answer', async () => {
    for (let i = LOGIN_POLICY.freeFailures; i < LOGIN_POLICY.lockAfter; i++) {
      await waitOut('officer.lock');
      expect((await login(i % 2 ? b : a, 'officer.lock', `guess-${i}`)).status).toBe(401);
    }
    await waitOut('officer.lock');
    const wrong = await login(a, 'officer.lock', 'still-wrong');
    for (const gw of [a, b]) {
      const right = await login(gw, 'officer.lock', lockPassword);
      expect(right.status).toBe(401);
      expect(right.headers['set-cookie']).toBeUndefined();
      expect(right.body).toEqual(wrong.body);
      expect(right.headers['retry-after']).toBeUndefined();
    }
    expect(wrong.status).toBe(401);
    const details = await failureDetails('officer.lock');
    expect(details).toContainEqual(
      expect.objectContaining({ reason: 'bad_credentials', failures: LOGIN_POLICY.lockAfter, locked: true }),
    );
    expect(details.filter((d) => d.reason === 'account_locked').length).toBeGreaterThanOrEqual(3);
  });

  it('counts concurrent attempts on both instances exactly: no more passwords are tried than the lockout count', async () => {
    // One attempt short of the lockout, its wait run out: of a burst, exactly one may try a password.
    await a.app.ctx.pool.query(
      `INSERT INTO audit_login_failures (name, failures, last_failure_at) VALUES ('officer.burst', $1, now() - interval '10 minutes')`,
      [LOGIN_POLICY.lockAfter - 1],
    );
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, i) => login(i % 2 ? b : a, 'officer.burst', `guess-${i}`)),
    );
    expect(answers.map((r) => r.status)).toEqual(Array(12).fill(401));
    const reasons = (await failureDetails('officer.burst')).map((d) => d.reason);
    expect(reasons.filter((r) => r === 'bad_credentials')).toEqual(['bad_credentials']);
    expect(reasons.filter((r) => r === 'account_locked').length).toBe(11);
  });

  it('does not lock out another officer behind the same address', async () => {
    // Once ten failures from one address locked out everyone behind it.
    for (let i = 0; i < 10; i++) expect((await login(a, `guesser-${i}`, 'guess')).status).toBe(401);
    const res = await login(a, 'officer.other', otherPassword);
    expect(res.status).toBe(200);
    expect(res.headers['set-cookie']![0]).toMatch(/^gw_audit_session=/);
  });

  it('a success ends the run of failures', async () => {
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < LOGIN_POLICY.freeFailures - 1; i++)
        expect((await login(a, 'officer.other', `typo-${round}-${i}`)).status).toBe(401);
      expect((await login(b, 'officer.other', otherPassword)).status).toBe(200);
    }
  });

  it('an administrator unlocks the account from the CLI, audited; then it signs in', async () => {
    const env = cleanEnv({ DATABASE_URL: a.databaseUrl });
    const list = await runCli(['audit', 'users', 'list'], env);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/officer\.lock\s.*\syes/);
    const unlock = await runCli(['audit', 'users', 'unlock', 'officer.lock'], env);
    expect(unlock.code).toBe(0);
    expect(unlock.stdout).toContain('unlocked officer.lock');
    const { rows } = await a.app.ctx.pool.query<{ entry: string }>(
      `SELECT entry FROM audit_log WHERE type = 'compliance.unlocked'`,
    );
    expect(rows.length).toBe(1);
    const entry = JSON.parse(rows[0]!.entry);
    expect(entry.entity).toEqual([{ type: 'audit-user', id: 'officer.lock' }]);
    expect(entry.agent.id).toMatch(/^cli:/);
    expect(entry.detail.failures).toBe(LOGIN_POLICY.lockAfter);
    expect((await login(b, 'officer.lock', lockPassword)).status).toBe(200);
    const again = await runCli(['audit', 'users', 'unlock', '--name', 'officer.lock'], env);
    expect(again.stdout).toContain('no failed sign-ins');
  });
});
