import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import { ASSERTION_TYPE, TOKEN_PATH } from '../auth/token-endpoint.ts';
import type { CurlCall, StepsPrinter } from './steps-printer.ts';
import { shownPath } from './steps-printer.ts';

/** Where a client keeps its key pair: the private JWK (0600) and the public JWKS it registers. */
export interface ClientKeyFiles {
  privateJwk: string;
  jwks: string;
}

export function clientKeyFiles(dir: string, clientId: string): ClientKeyFiles {
  return { privateJwk: join(dir, `${clientId}.private.jwk.json`), jwks: join(dir, `${clientId}.jwks.json`) };
}

/** The client's ES256 key pair, made on the first run and kept in the demo folder like an EHR keeps its own. */
export async function ensureClientKey(files: ClientKeyFiles): Promise<{ jwks: { keys: JWK[] }; created: boolean }> {
  if (existsSync(files.privateJwk) && existsSync(files.jwks))
    return { jwks: JSON.parse(readFileSync(files.jwks, 'utf8')) as { keys: JWK[] }, created: false };
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = `demo-${randomUUID().slice(0, 8)}`;
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  mkdirSync(join(files.privateJwk, '..'), { recursive: true });
  writeFileSync(files.privateJwk, JSON.stringify({ ...(await exportJWK(privateKey)), kid, alg: 'ES256' }), {
    mode: 0o600,
  });
  const jwks = { keys: [publicJwk] };
  writeFileSync(files.jwks, JSON.stringify(jwks, null, 2) + '\n');
  return { jwks, created: true };
}

export interface ApiRequest {
  headers?: Record<string, string>;
  /** Sent as application/json and shown inline. */
  json?: unknown;
  /** Sent from this file with the given content type. */
  file?: { path: string; contentType: string };
  /** Shown as -o FILE: where the demo writes the answer. */
  output?: string;
}

/**
 * An API client of one gateway, as an EHR (or an operator's console) uses it: SMART Backend Services
 * (a private_key_jwt assertion for a short-lived bearer token), then plain HTTP. Every call is printed
 * as the curl command that does the same.
 */
export class ApiClient {
  private token?: { value: string; until: number };
  readonly id: string;
  readonly printer: StepsPrinter;
  /** The shell variable the printed commands keep this client's token in. */
  readonly tokenVariable: string;
  private readonly gateway: { url: string; variable: string };
  private readonly scope: string;
  private readonly keys: ClientKeyFiles;

  constructor(o: {
    id: string;
    gateway: { url: string; variable: string };
    scope: string;
    keys: ClientKeyFiles;
    printer: StepsPrinter;
    tokenVariable: string;
  }) {
    this.id = o.id;
    this.gateway = o.gateway;
    this.scope = o.scope;
    this.keys = o.keys;
    this.printer = o.printer;
    this.tokenVariable = o.tokenVariable;
  }

  private async assertion(): Promise<string> {
    const jwk = JSON.parse(readFileSync(this.keys.privateJwk, 'utf8')) as JWK;
    return new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg: 'ES256', kid: String(jwk.kid), typ: 'JWT' })
      .setIssuer(this.id)
      .setSubject(this.id)
      .setAudience(this.gateway.url + TOKEN_PATH)
      .setExpirationTime('2m')
      .sign(await importJWK(jwk, 'ES256'));
  }

  /** A bearer token from POST /auth/token, reused until shortly before it expires. */
  async bearer(): Promise<string> {
    if (this.token && this.token.until > Date.now()) return this.token.value;
    const first = this.token === undefined;
    const form: Array<[string, string]> = [
      ['grant_type', 'client_credentials'],
      ['client_assertion_type', ASSERTION_TYPE],
      ['client_assertion', await this.assertion()],
      ['scope', this.scope],
    ];
    if (first) {
      this.printer.info(
        `ASSERTION: a JWT signed (ES256) with ${shownPath(this.keys.privateJwk)}: iss = sub = ${this.id}, ` +
          `aud = ${this.gateway.url}${TOKEN_PATH}, exp within 5 minutes, a fresh jti`,
      );
      this.printer.curl({
        method: 'POST',
        url: `$${this.gateway.variable}${TOKEN_PATH}`,
        form: form.map(([k, v]) => [k, k === 'client_assertion' ? '$ASSERTION' : v]),
        capture: { variable: this.tokenVariable, jq: '.access_token' },
      });
    }
    const res = await fetch(this.gateway.url + TOKEN_PATH, { method: 'POST', body: new URLSearchParams(form) });
    const body = (await res.json()) as { access_token?: string; expires_in?: number; error_description?: string };
    if (res.status !== 200 || !body.access_token)
      throw new Error(`token for ${this.id} refused: ${res.status} ${body.error_description ?? ''}`);
    this.token = { value: body.access_token, until: Date.now() + ((body.expires_in ?? 60) - 30) * 1000 };
    return body.access_token;
  }

  /** One API call, printed as curl first; `quiet` for the polling that follows a printed call. */
  async request(method: string, path: string, req: ApiRequest = {}, quiet = false): Promise<Response> {
    const bearer = await this.bearer();
    const headers: Record<string, string> = { authorization: `Bearer ${bearer}`, ...req.headers };
    let body: string | Uint8Array | undefined;
    if (req.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(req.json);
    } else if (req.file) {
      headers['content-type'] = req.file.contentType;
      body = readFileSync(req.file.path);
    }
    if (!quiet) {
      const call: CurlCall = {
        method,
        url: `$${this.gateway.variable}${path}`,
        headers: [
          ['Authorization', `Bearer $${this.tokenVariable}`],
          ...Object.entries(req.headers ?? {}),
          ...(req.file ? ([['Content-Type', req.file.contentType]] as Array<[string, string]>) : []),
          ...(req.json !== undefined ? ([['Content-Type', 'application/json']] as Array<[string, string]>) : []),
        ],
        json: req.json,
        file: req.file?.path,
        output: req.output,
      };
      this.printer.curl(call);
    }
    return fetch(this.gateway.url + path, { method, headers, body });
  }

  /** A call whose answer must be one of `ok`; its JSON body. */
  async json<T>(method: string, path: string, req: ApiRequest = {}, ok = [200], quiet = false): Promise<T> {
    const res = await this.request(method, path, req, quiet);
    const text = await res.text();
    if (!ok.includes(res.status)) throw new Error(`${method} ${path} answered ${res.status}: ${text.slice(0, 500)}`);
    return (text ? JSON.parse(text) : {}) as T;
  }
}
