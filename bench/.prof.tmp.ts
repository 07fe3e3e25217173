import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import { buildApp } from '../plugins/app.ts';
import { loadConfig } from '../src/config.ts';
import { freePort } from '../test/helpers/ports.ts';
import { acceptSubmission, IntakeWriter } from '../src/exchange/intake.ts';
import { checkBundle } from '../src/fhir/bundle.ts';
import { parseFhirJson } from '../src/fhir/json.ts';
delete process.env.SOFTHSM2_CONF;
const config = loadConfig({ DATA_DIR: mkdtempSync(join(tmpdir(), 'gw-prof-')), PORT: String(await freePort()), EMBEDDED_PG_PORT: String(await freePort()), LOG_LEVEL: 'silent', HSM_SESSIONS: '4', RATE_LIMIT: '0' });
const app = await buildApp(config, { logger: false });
const ctx = app.ctx;
const ids: string[] = [];
for (const id of ['pa.test', 'pb.test']) {
  const enc = await exportJWK((await generateKeyPair('ECDH-ES', { extractable: true })).publicKey);
  await ctx.directory.add({ id, endpoint: `https://${id}/inbox`, jwks: { keys: [{ ...enc, kid: await calculateJwkThumbprint(enc), use: 'enc', alg: 'ECDH-ES' }] } });
  ids.push(id);
}
const b = { resourceType: 'Bundle', type: 'message', entry: [
  { fullUrl: 'urn:uuid:0c3a3e3a-1f1e-4c8e-9b1a-3c5d7e9f1a2b', resource: { resourceType: 'MessageHeader', eventCoding: { code: 'r' }, source: { endpoint: 'urn:b' }, destination: ids.map((id) => ({ endpoint: `https://${id}/inbox`, receiver: { identifier: { value: id } } })) } },
  { fullUrl: 'urn:uuid:5d1c1a1e-2b3c-4d5e-8f90-a1b2c3d4e5f6', resource: { resourceType: 'Basic', code: { text: 'x'.repeat(10000) } } }] };
const raw = JSON.stringify(b);
const writer = new IntakeWriter(ctx.pool);
const t = (label: string, n: number, t0: number) => console.log(label.padEnd(20), ((performance.now() - t0) / n).toFixed(3), 'ms');
let t0 = performance.now(); for (let i = 0; i < 500; i++) parseFhirJson(raw, 64); t('parse', 500, t0);
t0 = performance.now(); for (let i = 0; i < 500; i++) checkBundle(b); t('checkBundle', 500, t0);
t0 = performance.now(); for (let i = 0; i < 200; i++) await ctx.directory.resolve(ids); t('resolve', 200, t0);
const p = await ctx.directory.resolve(ids);
t0 = performance.now(); for (let i = 0; i < 200; i++) await ctx.directory.encryptionKey(p[0]!); t('encKey', 200, t0);
t0 = performance.now(); for (let i = 0; i < 200; i++) await ctx.pool.query('SELECT 1'); t('SELECT 1', 200, t0);
t0 = performance.now(); for (let i = 0; i < 200; i++) await acceptSubmission(ctx, writer, { clientId: 'c', raw, bundle: b, recipients: { from: 'message' } }); t('accept sequential', 200, t0);
t0 = performance.now(); await Promise.all(Array.from({ length: 400 }, () => acceptSubmission(ctx, writer, { clientId: 'c', raw, bundle: b, recipients: { from: 'message' } }))); t('accept concurrent', 400, t0);
const { rows } = await ctx.pool.query("SELECT current_setting('synchronous_commit') s, current_setting('fsync') f");
console.log(rows);
await app.close(); process.exit(0);
