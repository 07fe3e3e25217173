import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import request from 'supertest';
import { registerClient } from '../../src/auth/clients.ts';
import { ASSERTION_TYPE, TOKEN_PATH } from '../../src/auth/token-endpoint.ts';
import type { TestGateway } from './gateway.ts';

export interface TestClient {
  id: string;
  /** The client's software ES256 key pair (public half registered inline). */
  privateKey: CryptoKey;
  publicJwk: JWK;
  kid: string;
  /** A signed client assertion for this gateway's token URL (overrides for negative tests). */
  assertion(claims?: Record<string, unknown>, header?: Record<string, unknown>): Promise<string>;
  /** A fresh access token via the real client_credentials + private_key_jwt flow. */
  token(scopes?: string[]): Promise<string>;
  /** 'Bearer <token>' for an Authorization header. */
  bearer(scopes?: string[]): Promise<string>;
}

export interface TestClientOptions {
  id?: string;
  scopes: string[];
  name?: string;
  rateLimit?: number;
  /** Inbox routing (auth_clients.receives_from): partner ids or ['*']; default none (fail closed). */
  receivesFrom?: string[];
}

/**
 * Register a client with an inline JWKS directly in the registry, then get
 * tokens from POST /auth/token exactly as an EHR would.
 */
export async function testClient(gw: TestGateway, options: TestClientOptions): Promise<TestClient> {
  const id = options.id ?? `test-client-${randomUUID().slice(0, 8)}`;
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const kid = `k-${randomUUID().slice(0, 8)}`;
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  await registerClient(gw.app.ctx.pool, {
    id,
    name: options.name ?? id,
    jwks: { keys: [publicJwk] },
    scopes: options.scopes,
    rateLimit: options.rateLimit,
    receivesFrom: options.receivesFrom,
  });
  const tokenUrl = gw.config.baseUrl + TOKEN_PATH;

  /** Claims given as undefined are left out (e.g. { jti: undefined } for a missing jti). */
  const assertion = async (claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}) => {
    const now = Math.floor(Date.now() / 1000);
    const payload: Record<string, unknown> = {
      iss: id,
      sub: id,
      aud: tokenUrl,
      exp: now + 240,
      jti: randomUUID(),
      ...claims,
    };
    for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k];
    return new SignJWT(payload)
      .setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT', ...header } as never)
      .sign(privateKey);
  };

  const token = async (scopes = options.scopes) => {
    const res = await request(gw.app.server)
      .post(TOKEN_PATH)
      .type('form')
      .send({
        grant_type: 'client_credentials',
        client_assertion_type: ASSERTION_TYPE,
        client_assertion: await assertion(),
        scope: scopes.join(' '),
      });
    if (res.status !== 200)
      throw new Error(`token request for ${id} failed: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.access_token as string;
  };
  return {
    id,
    privateKey,
    publicJwk,
    kid,
    assertion,
    token,
    bearer: async (scopes) => `Bearer ${await token(scopes)}`,
  };
}
