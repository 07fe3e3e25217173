/**
 * Inbound receive throughput, in one run:
 *   gateway-http  POST /inbox over HTTP: open (HSM ECDH + Concat KDF, AES-GCM) + verify (ES256, directory)
 *                 + dedupe + store sealed + audit + HSM-signed receipt
 *   gateway       the same pipeline called in-process (no HTTP)
 *   no-store      open + verify + sign the receipt, without the database write (where the rest goes)
 *   raw           the bare primitives per message: HSM derive (pkcs11js through the Hsm facade),
 *                 AES-256-GCM decrypt, ES256 verify (node:crypto), HSM sign of the receipt digest
 * Each with CONCURRENCY callers for SECONDS seconds, 10 KiB bundles, every envelope a new delivery.
 * Run: npm run bench:receive [-- seconds]   (embedded PostgreSQL + dev SoftHSM token in a temp dir)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDecipheriv, createHash, createPublicKey, verify } from 'node:crypto';
import { buildApp } from '../plugins/app.ts';
import { loadConfig } from '../src/config.ts';
import { inboxReceiver } from '../src/inbound/receive.ts';
import { gatewayDecryptionKeys } from '../src/inbound/decryption-keys.ts';
import { verifySignedContent } from '../src/protocol/signed-content.ts';
import { openCompactJwe } from '../src/jose/open.ts';
import { signReceipt } from '../src/protocol/receipt.ts';
import { checkHeader, concatKdfOtherInfo, parseCompactJwe } from '../src/jose/jwe-header.ts';
import { claimsFor, seal, signContent, softPartner } from '../test/helpers/envelopes.ts';
import { freePort } from '../test/helpers/ports.ts';

const SECONDS = Number(process.argv[2] ?? 4);
const ENVELOPES = 9_000; // about 19 KB each; a phase ends early if it uses its share up
const CONCURRENCY = 8;
delete process.env.SOFTHSM2_CONF; // the dev token below must use its own directory

const dataDir = mkdtempSync(join(tmpdir(), 'gw-bench-receive-'));
const port = await freePort();
const config = loadConfig({
  DATA_DIR: dataDir,
  PORT: String(port),
  EMBEDDED_PG_PORT: String(await freePort()),
  LOG_LEVEL: 'silent',
  HSM_SESSIONS: '4',
});
const app = await buildApp(config, { logger: false });
await app.listen({ port, host: '127.0.0.1' });
const ctx = app.ctx;

try {
  const partner = await softPartner('https://bench-sender.test');
  await ctx.directory.add({ id: partner.id, endpoint: 'https://bench-sender.test/inbox', jwks: partner.jwks });
  const enc = ctx.keyring.jwks().keys.find((k) => k.use === 'enc')!;
  const bundle = {
    resourceType: 'Bundle',
    type: 'collection',
    entry: [{ resource: { resourceType: 'Basic', id: 'pad', text: 'x'.repeat(10_240 - 120) } }],
  };

  // Envelopes are made before the clock starts: sealing is the sender's cost, not ours.
  const envelopes: string[] = [];
  for (let i = 0; i < ENVELOPES; i++)
    envelopes.push(seal(enc as never, await signContent(partner, claimsFor(partner, config.org, bundle))));
  console.log(`prepared ${envelopes.length} envelopes of ${envelopes[0]!.length} bytes`);
  let next = 0;
  let limit = 0;
  /** The next unused envelope of this phase's share, or undefined when the share is used up. */
  const take = () => (next < limit ? envelopes[next++]! : undefined);

  async function rate(name: string, one: () => Promise<boolean>, share = 0, seconds = SECONDS): Promise<number> {
    limit = Math.min(envelopes.length, next + share);
    const until = performance.now() + seconds * 1000;
    let n = 0;
    const start = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (performance.now() < until && (await one())) n++;
      }),
    );
    const perSec = n / ((performance.now() - start) / 1000);
    console.log(
      `${name.padEnd(14)} ${perSec.toFixed(0).padStart(6)} /s  (${n} in ${((performance.now() - start) / 1000).toFixed(1)} s, ${CONCURRENCY} callers)`,
    );
    return perSec;
  }

  // Raw primitives on one fixed envelope (what open + verify + receipt cannot do without).
  const sample = envelopes[envelopes.length - 1]!;
  const jwe = parseCompactJwe(sample);
  const h = checkHeader(jwe);
  const encRow = ctx.keyring.active('enc');
  const otherInfo = concatKdfOtherInfo('A256GCM', h.apu, h.apv, 256);
  const cek0 = await ctx.hsm.deriveConcatKdf(encRow.hsm_id, h.epkPoint, 32, otherInfo, 32, config.hsmKdf);
  const d0 = createDecipheriv('aes-256-gcm', cek0, jwe.iv).setAAD(Buffer.from(jwe.protectedB64)).setAuthTag(jwe.tag);
  const jws = Buffer.concat([d0.update(jwe.ciphertext), d0.final()]).toString();
  const [jh, jp, js] = jws.split('.') as [string, string, string];
  const senderKey = createPublicKey({ key: partner.jwks.keys[0] as never, format: 'jwk' });
  const sigRow = ctx.keyring.active('sig');
  const raw = async () => {
    const cek = await ctx.hsm.deriveConcatKdf(encRow.hsm_id, h.epkPoint, 32, otherInfo, 32, config.hsmKdf);
    const d = createDecipheriv('aes-256-gcm', cek, jwe.iv)
      .setAAD(Buffer.from(jwe.protectedB64, 'ascii'))
      .setAuthTag(jwe.tag);
    Buffer.concat([d.update(jwe.ciphertext), d.final()]);
    if (
      !verify(
        'sha256',
        Buffer.from(`${jh}.${jp}`),
        { key: senderKey, dsaEncoding: 'ieee-p1363' },
        Buffer.from(js, 'base64url'),
      )
    )
      throw new Error('verify');
    await ctx.hsm.signDigest(sigRow.hsm_id, 'ES256', createHash('sha256').update('receipt').digest());
    return true;
  };

  // The pipeline without the database write: what the crypto and the directory lookups cost.
  const resolveKey = gatewayDecryptionKeys(ctx.keyring);
  const noStore = async () => {
    const envelope = take();
    if (!envelope) return false;
    const opened = await openCompactJwe(envelope, { hsm: ctx.hsm, kdf: config.hsmKdf, resolveKey });
    const v = await verifySignedContent(opened.plaintext.toString(), {
      directory: ctx.directory,
      org: config.org,
      clockSkewMs: config.clockSkew,
      maxAgeMs: config.inboxMaxAge,
    });
    await signReceipt(ctx.keyring.signer(), { iss: config.org, aud: v.claims.iss, delivery: v.claims.jti, envelope });
    return true;
  };

  const receive = inboxReceiver(ctx);
  const pipeline = async () => {
    const envelope = take();
    if (!envelope) return false;
    if ((await receive(envelope)).duplicate) throw new Error('unexpected duplicate');
    return true;
  };
  const http = async () => {
    const envelope = take();
    if (!envelope) return false;
    const res = await fetch(`${config.baseUrl}/inbox`, {
      method: 'POST',
      headers: { 'content-type': 'application/jose' },
      body: envelope,
    });
    if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
    await res.text();
    return true;
  };

  await rate('warm-up', pipeline, 500, 1);
  const rawRate = await rate('raw', raw);
  const noStoreRate = await rate('no-store', noStore, 3_000);
  const gwRate = await rate('gateway', pipeline, 3_000);
  const httpRate = await rate('gateway-http', http, 2_500);
  const stored = Number((await ctx.pool.query('SELECT count(*)::int AS n FROM inbox_messages')).rows[0].n);
  console.log(
    `\ngateway/raw ${(gwRate / rawRate).toFixed(2)}, gateway-http/raw ${(httpRate / rawRate).toFixed(2)}, no-store/raw ${(noStoreRate / rawRate).toFixed(2)}; ${stored} messages stored`,
  );
  console.log(
    `machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, node ${process.version}, HSM_KDF=${config.hsmKdf}`,
  );
} finally {
  await app.close();
  rmSync(dataDir, { recursive: true, force: true });
}
