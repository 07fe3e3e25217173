import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import {
  CompactSign,
  calculateJwkThumbprint,
  compactDecrypt,
  compactVerify,
  createLocalJWKSet,
  exportJWK,
  generateKeyPair,
  type CryptoKey,
  type JWK,
} from 'jose';
import { envelopeDigest, PROTOCOL } from '../../src/protocol/wire.ts';

/**
 * The content bytes as the sender accepted them, recovered from a verified
 * payload written by claimsPayload (the test partner's reader of the wire
 * format; the gateway's own receive path keeps the payload whole). Falls back to re-serialising `content`
 * when the payload has another layout (any JSON is a valid payload).
 */
export function contentBytes(payload: string): string {
  // The members before `content` are strings and numbers: a quote inside a
  // string value is escaped, so the first `"content":` is the top-level one.
  const marker = '"content":';
  const at = payload.indexOf(marker);
  const parsed = JSON.parse(payload) as { content?: unknown };
  if (at > 0 && payload.endsWith('}')) {
    const raw = payload.slice(at + marker.length, -1);
    try {
      if (JSON.stringify(JSON.parse(raw)) === JSON.stringify(parsed.content)) return raw;
    } catch {
      // not the expected layout; fall through
    }
  }
  return JSON.stringify(parsed.content);
}

/** What the test recipient does with the next POST (then it falls back to 'ok'). */
export type Behaviour =
  | { kind: 'ok' }
  | { kind: 'status'; status: number; retryAfter?: string }
  | { kind: 'hang' }
  | { kind: 'forged-receipt' }
  | { kind: 'wrong-digest' };

export interface Received {
  jti: string;
  claims: Record<string, unknown>;
  /** The bundle bytes recovered from the signed payload. */
  content: string;
  envelope: string;
  idempotencyKey: string | undefined;
}

export interface TestRecipient {
  id: string;
  url: string;
  inbox: string;
  jwksUri: string;
  jwks: { keys: JWK[] };
  encPrivate: JWK;
  /** Accepted deliveries, once per jti. */
  received: Map<string, Received>;
  /** Every POST, including refused and duplicate ones. */
  posts: Array<{ idempotencyKey: string | undefined; answered: string }>;
  script: Behaviour[];
  close(): Promise<void>;
}

async function keyPair(alg: string, use: 'sig' | 'enc') {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const pub = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(pub);
  return { privateKey, pub: { ...pub, kid, use, alg }, priv: { ...(await exportJWK(privateKey)), kid }, kid };
}

function body(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let s = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (s += c));
    req.on('end', () => resolve(s));
    req.on('error', reject);
  });
}

/**
 * A partner gateway built only on jose with software keys, independent of
 * the gateway's own code: it opens envelopes, verifies the sender against the
 * sender's published JWKS, deduplicates by jti and answers with a receipt.
 */
export async function startTestRecipient(opts: {
  id?: string;
  senderId: string;
  senderJwks: () => Promise<{ keys: JWK[] }>;
}): Promise<TestRecipient> {
  const enc = await keyPair('ECDH-ES', 'enc');
  const sig = await keyPair('ES256', 'sig');
  const forger = await keyPair('ES256', 'sig');
  const received = new Map<string, Received>();
  const receipts = new Map<string, string>();
  const posts: TestRecipient['posts'] = [];
  const script: Behaviour[] = [];
  const hung = new Set<ServerResponse>();
  const jwks = { keys: [enc.pub, sig.pub] as JWK[] };
  let id = opts.id ?? '';

  const receipt = async (key: CryptoKey, kid: string, delivery: string, digest: string) =>
    new CompactSign(
      new TextEncoder().encode(
        JSON.stringify({
          iss: id,
          aud: opts.senderId,
          iat: Math.floor(Date.now() / 1000),
          jti: randomUUID(),
          delivery,
          digest,
          status: 'accepted',
        }),
      ),
    )
      .setProtectedHeader({ alg: 'ES256', kid, typ: PROTOCOL.receiptTyp })
      .sign(key);

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'GET' && req.url === '/jwks.json') {
      res
        .writeHead(200, { 'content-type': 'application/jwk-set+json', 'cache-control': 'max-age=300' })
        .end(JSON.stringify(jwks));
      return;
    }
    if (req.method !== 'POST' || req.url !== '/inbox') {
      res.writeHead(404).end();
      return;
    }
    const envelope = await body(req);
    const idempotencyKey = req.headers['idempotency-key'] as string | undefined;
    const b = script.shift() ?? { kind: 'ok' };
    posts.push({ idempotencyKey, answered: b.kind === 'status' ? String(b.status) : b.kind });
    if (b.kind === 'hang') {
      hung.add(res);
      return;
    }
    if (b.kind === 'status') {
      res.writeHead(b.status, {
        'content-type': 'application/fhir+json',
        ...(b.retryAfter ? { 'retry-after': b.retryAfter } : {}),
      });
      res.end(
        JSON.stringify({
          resourceType: 'OperationOutcome',
          issue: [{ severity: 'error', code: 'transient', diagnostics: 'scripted' }],
        }),
      );
      return;
    }
    if (req.headers['content-type'] !== PROTOCOL.mediaType)
      throw new Error(`content-type ${req.headers['content-type']}`);
    const { plaintext, protectedHeader } = await compactDecrypt(envelope, enc.privateKey, {
      keyManagementAlgorithms: ['ECDH-ES'],
      contentEncryptionAlgorithms: ['A256GCM'],
    });
    if (protectedHeader.cty !== 'JWT' || protectedHeader.kid !== enc.kid) throw new Error('bad envelope header');
    const inner = new TextDecoder().decode(plaintext);
    const verified = await compactVerify(inner, createLocalJWKSet(await opts.senderJwks()), { algorithms: ['ES256'] });
    if (verified.protectedHeader.typ !== PROTOCOL.contentTyp) throw new Error('bad typ');
    const payload = new TextDecoder().decode(verified.payload);
    const claims = JSON.parse(payload) as Record<string, unknown>;
    if (claims.aud !== id || claims.iss !== opts.senderId || claims.jti !== idempotencyKey)
      throw new Error('claims do not match');
    const jti = claims.jti as string;
    const digest = envelopeDigest(envelope);
    let answer = receipts.get(jti);
    if (!answer) {
      answer = await receipt(sig.privateKey, sig.kid, jti, digest);
      receipts.set(jti, answer);
      received.set(jti, { jti, claims, content: contentBytes(payload), envelope, idempotencyKey });
    }
    if (b.kind === 'forged-receipt') answer = await receipt(forger.privateKey, sig.kid, jti, digest);
    if (b.kind === 'wrong-digest') answer = await receipt(sig.privateKey, sig.kid, jti, envelopeDigest(envelope + 'x'));
    res.writeHead(200, { 'content-type': PROTOCOL.mediaType }).end(answer);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      res.writeHead(400, { 'content-type': 'application/fhir+json' }).end(
        JSON.stringify({
          resourceType: 'OperationOutcome',
          issue: [{ severity: 'error', code: 'invalid', diagnostics: (err as Error).message }],
        }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  if (!id) id = url;
  return {
    id,
    url,
    inbox: `${url}/inbox`,
    jwksUri: `${url}/jwks.json`,
    jwks,
    encPrivate: { ...enc.priv, alg: 'ECDH-ES' },
    received,
    posts,
    script,
    close: async () => {
      for (const r of hung) r.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
