import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import type { JWK } from 'jose';
import { startTwoGateways, type Peer, type TwoGateways } from '../helpers/two-gateways.ts';
import { waitFor } from '../helpers/outbound.ts';
import { publishedEncKey, seal } from '../helpers/envelopes.ts';
import { signJson } from '../../src/jose/jws.ts';
import { signAnnouncement } from '../../src/protocol/imaging-announcement.ts';
import { runKeysRotate } from '../../src/worker/tasks/keys.ts';
import { partnerKeyLog } from '../../src/directory/partner-key-log.ts';
import { refreshPartnerKeys } from '../../src/directory/partner-refresh.ts';
import { directoryFromConfig } from '../../src/directory/directory.ts';

/**
 * A partner's signing key stops verifying new content the moment we see it
 * gone from the partner's JWKS (an admin PUT, any refetch, or the refresh of
 * another process), while messages it signed before keep opening. Gateway B
 * is the partner; A receives, with a short unknown-kid cooldown.
 */
type Jwks = { keys: Array<JWK & { kid: string; use: string }> };
type Outcome = { resourceType: string; issue: Array<{ details: { coding: Array<{ code: string }> } }> };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const bundle = () => ({
  resourceType: 'Bundle',
  type: 'collection',
  entry: [
    { fullUrl: `urn:uuid:${randomUUID()}`, resource: { resourceType: 'Basic', id: 'b1', code: { text: 'note' } } },
  ],
});

describe('partner key withdrawal: new content needs a key in the current JWKS; stored messages still open', () => {
  let t: TwoGateways;
  let a: Peer;
  let b: Peer;
  let aOrg: string;
  let bOrg: string;
  beforeAll(async () => {
    // Protocol v1 (ES256 keys only): the same rules for an ML-DSA key are tested in inbox-pq-v2.
    t = await startTwoGateways({ JWKS_REFRESH_COOLDOWN: '1s', PROTOCOL_V2: 'off' });
    ({ a, b } = t);
    aOrg = a.gw.config.org;
    bOrg = b.gw.config.org;
  }, 60_000);
  afterAll(async () => t?.close());

  const bJwks = async () => (await (await fetch(`${b.gw.url}/.well-known/jwks.json`)).json()) as Jwks;
  /** Content signed just now by B's HSM (its active signing key), sealed to A: what B's worker would send. */
  const freshEnvelope = async () => {
    const claims = {
      iss: bOrg,
      aud: aOrg,
      iat: Math.floor(Date.now() / 1000),
      jti: randomUUID(),
      exchange: randomUUID(),
      content_type: 'application/fhir+json',
      content: bundle(),
    };
    const jws = await signJson(b.gw.app.ctx.keyring.signer(), claims, { typ: 'exchange+jwt' });
    return { jti: claims.jti, envelope: seal(await publishedEncKey(a.gw.url), jws) };
  };
  const postInbox = (envelope: string) =>
    fetch(`${a.gw.url}/inbox`, { method: 'POST', headers: { 'content-type': 'application/jose' }, body: envelope });
  const refusals = async (code: string) =>
    Number(
      (
        await a.gw.app.ctx.pool.query(
          `SELECT count(*)::int AS n FROM audit_log WHERE type = 'inbox.refused' AND entry LIKE $1`,
          [`%"reason":"${code}"%`],
        )
      ).rows[0].n,
    );
  const inboxRows = async () =>
    Number((await a.gw.app.ctx.pool.query('SELECT count(*)::int AS n FROM inbox_messages')).rows[0].n);
  const codeOf = async (res: Response) => {
    const outcome = (await res.json()) as Outcome;
    expect(outcome.resourceType).toBe('OperationOutcome');
    return outcome.issue[0]!.details.coding[0]!.code;
  };
  const expectWithdrawnRefusal = async () => {
    const before = { refused: await refusals('JWS_KEY_WITHDRAWN'), rows: await inboxRows() };
    const res = await postInbox((await freshEnvelope()).envelope);
    expect(res.status).toBe(400);
    expect(await codeOf(res)).toBe('JWS_KEY_WITHDRAWN');
    expect(await refusals('JWS_KEY_WITHDRAWN')).toBe(before.refused + 1);
    expect(await inboxRows()).toBe(before.rows);
  };
  const putPartner = async (keys: { jwks: Jwks } | { jwks_uri: string }) =>
    request(a.gw.app.server)
      .put(`/admin/partners/${encodeURIComponent(bOrg)}`)
      .set('authorization', await a.admin.bearer())
      .send({ name: `gateway ${bOrg}`, endpoint: `${b.gw.config.baseUrl}/inbox`, ...keys })
      .expect(200);
  const logRow = async (kid: string) => (await partnerKeyLog(a.gw.app.ctx.pool, bOrg)).find((r) => r.kid === kid);

  it('after an admin PUT drops the key: the withdrawal is logged at once, fresh content (inbox and imaging) is refused and audited, now and later; a message accepted before still opens', async () => {
    // A message B signed and A accepted before the withdrawal.
    const sent = await request(b.gw.app.server)
      .post(`/exchanges?recipient=${encodeURIComponent(aOrg)}`)
      .set('authorization', await b.ehr.bearer())
      .type('application/fhir+json')
      .send(JSON.stringify(bundle()));
    expect(sent.status).toBe(202);
    const stored = await waitFor(
      'the message at A',
      async () =>
        (await a.gw.app.ctx.pool.query<{ id: string }>('SELECT id FROM inbox_messages WHERE sender = $1', [bOrg]))
          .rows[0],
      30_000,
      100,
    );
    const kid = b.gw.app.ctx.keyring.signer().kid;
    await refreshPartnerKeys(a.gw.app.ctx, { force: true });
    expect((await logRow(kid))?.disappeared_at, 'in the log, listed').toBeNull();

    // A's administrator withdraws B's signing key: an inline JWKS without it.
    const kept = (await bJwks()).keys.filter((k) => k.kid !== kid);
    expect(kept.some((k) => k.use === 'enc')).toBe(true);
    const putAt = Date.now();
    await putPartner({ jwks: { keys: kept } });
    const putDone = Date.now();

    await expectWithdrawnRefusal();
    // Past the unknown-kid cooldown and the directory's short caches: still refused.
    await sleep(1_500);
    await expectWithdrawnRefusal();

    // The PUT itself recorded the withdrawal (refusals write no log rows), and audited it.
    const gone = (await logRow(kid))?.disappeared_at?.getTime();
    expect(gone, 'withdrawal recorded by the PUT').toBeGreaterThanOrEqual(putAt);
    expect(gone).toBeLessThanOrEqual(putDone);
    const disappeared = await a.gw.app.ctx.pool.query(
      `SELECT entry FROM audit_log WHERE type = 'partner-key.disappeared' AND entry LIKE $1`,
      [`%${kid}%`],
    );
    expect(disappeared.rows).toHaveLength(1);

    // The imaging inbox refuses the announcement before reading any bulk.
    const announcement = await signAnnouncement(b.gw.app.ctx.keyring.signer(), {
      iss: bOrg,
      aud: aOrg,
      iat: Math.floor(Date.now() / 1000),
      jti: randomUUID(),
      exchange: randomUUID(),
    });
    const part = (body: string) => `--bnd\r\nContent-Type: application/jose\r\n\r\n${body}\r\n`;
    const before = await refusals('JWS_KEY_WITHDRAWN');
    const imaging = await fetch(`${a.gw.url}/inbox/imaging`, {
      method: 'POST',
      headers: { 'content-type': 'multipart/related; type="application/jose"; boundary=bnd' },
      body: `${part(announcement)}${part('x.y.z.w.v')}${part('x.y.z.w.v')}--bnd--\r\n`,
    });
    expect(imaging.status).toBe(400);
    expect(await codeOf(imaging)).toBe('JWS_KEY_WITHDRAWN');
    expect(await refusals('JWS_KEY_WITHDRAWN')).toBe(before + 1);

    // The message accepted before the withdrawal still opens and verifies on pull.
    const pulled = await request(a.gw.app.server)
      .get(`/inbox/messages/${stored.id}`)
      .set('authorization', await a.ehr.bearer());
    expect(pulled.status).toBe(200);
    expect(pulled.headers['x-exchange-sender']).toBe(bOrg);
    expect(JSON.parse(pulled.text)).toMatchObject({ resourceType: 'Bundle', type: 'collection' });
  });

  it('an unknown kid refetches the JWKS: a new key the partner published verifies, and the log records it at once', async () => {
    // Back to B's published JWKS (fetched and recorded by the PUT: the old key is listed again).
    const oldKid = b.gw.app.ctx.keyring.signer().kid;
    await putPartner({ jwks_uri: `${b.gw.config.baseUrl}/.well-known/jwks.json` });
    expect((await logRow(oldKid))?.disappeared_at).toBeNull();
    // B rotates its signing key at once (no pre-publication): A's copy does not list the new key.
    await runKeysRotate(b.gw.app.ctx, { use: 'sig', now: true, requestedBy: 'test' });
    const newKid = b.gw.app.ctx.keyring.signer().kid;
    expect(newKid).not.toBe(oldKid);
    expect(await logRow(newKid)).toBeUndefined();
    await sleep(1_100); // past the cooldown since the PUT's fetch

    const { jti, envelope } = await freshEnvelope();
    const res = await postInbox(envelope);
    expect(res.status, await res.clone().text()).toBe(200);
    expect((await a.gw.app.ctx.pool.query('SELECT sender_kid FROM inbox_messages WHERE jti = $1', [jti])).rows).toEqual(
      [{ sender_kid: newKid }],
    );
    expect(await logRow(newKid), 'first seen by the refetch').toMatchObject({ disappeared_at: null, use: 'sig' });
  });

  it('a withdrawal another process observed is honoured within a second, although this process still caches the key', async () => {
    // B's keys served by a host the test controls, so the partner can really drop one.
    let published = await bJwks();
    const host: Server = createServer((_req, res) =>
      res
        .writeHead(200, { 'content-type': 'application/jwk-set+json', 'cache-control': 'max-age=3600' })
        .end(JSON.stringify(published)),
    );
    await new Promise<void>((r) => host.listen(0, '127.0.0.1', r));
    try {
      const jwksUri = `http://127.0.0.1:${(host.address() as AddressInfo).port}/jwks.json`;
      await putPartner({ jwks_uri: jwksUri });
      const kid = b.gw.app.ctx.keyring.signer().kid;
      // A's server process holds the copy (for an hour by its Cache-Control) and accepts B's content.
      expect((await postInbox((await freshEnvelope()).envelope)).status).toBe(200);

      // Another process (the worker, or the CLI) refreshes B's keys; then B drops one, and it refreshes again.
      const other = directoryFromConfig(a.gw.config, {
        pool: a.gw.app.ctx.pool,
        fetch: globalThis.fetch,
        logger: { warn: () => undefined },
      });
      const refreshElsewhere = async () =>
        (
          await refreshPartnerKeys(
            { pool: a.gw.app.ctx.pool, directory: other, logger: a.gw.app.ctx.logger, config: a.gw.config },
            { force: true },
          )
        ).find((x) => x.partner === bOrg);
      expect((await refreshElsewhere())?.ok).toBe(true);
      published = { keys: published.keys.filter((k) => k.kid !== kid) };
      expect((await refreshElsewhere())?.observed?.disappeared).toEqual([kid]);

      // This process reads the log's records of a kid at most once a second: past that second, whether the
      // cooldown allows a refetch (it finds the key gone) or not (the log is trusted), refused.
      await sleep(1_100);
      await expectWithdrawnRefusal();
      await sleep(1_100);
      await expectWithdrawnRefusal();
    } finally {
      host.closeAllConnections();
      await new Promise<void>((r) => host.close(() => r()));
    }
  });
});
