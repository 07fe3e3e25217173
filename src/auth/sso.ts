import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRemoteJWKSet, type JWTVerifyGetKey } from 'jose';
import * as oidc from 'openid-client';
import type { Config } from '../config.ts';
import { GatewayError } from '../errors.ts';
import type { Logger } from '../gateway-context.ts';
import { isPlainIdentifier } from '../ids.ts';
import type { AccountRole, IssuerSession } from '../audit/users.ts';

/**
 * Single sign-on to the browser pages through an OpenID Connect issuer:
 * authorization code flow with PKCE (S256), done by openid-client, which
 * checks the ID token's signature, iss, aud, nonce and exp. What the
 * gateway adds: the pending sign-in in a signed, short-lived cookie (any
 * gateway process can finish it), the mapping of the role claim, and the
 * issuer session (sid) each gateway session is bound to.
 */
export type SsoPage = 'audit' | 'console';
export const SSO_PAGES: Record<SsoPage, { role: AccountRole; path: string }> = {
  audit: { role: 'compliance', path: '/audit/ui/' },
  console: { role: 'operator', path: '/console/' },
};
export const CALLBACK_PATH = '/auth/sso/callback';
export const LOGOUT_PATH = '/auth/sso/logout';
/** Where the issuer sends the browser back after its own sign-out (its post-logout redirect URI). */
export const SIGNED_OUT_PATH = '/auth/sso/signed-out';
/** Where the issuer posts its logout tokens (its backchannel_logout_uri for this client). */
export const BACKCHANNEL_LOGOUT_PATH = '/auth/sso/backchannel-logout';
const LOCAL_LOGOUT_PATH = '/audit/ui/logout';
const PENDING_TTL_MS = 10 * 60_000;
/**
 * How far past its exp an ID token is still taken: openid-client's default,
 * set here so that it is the gateway's rule (the issuer's clock and ours may
 * differ by seconds, never minutes).
 */
export const CLOCK_TOLERANCE_S = 30;

/** What the sign-in forms of both pages offer, and where their sign-out button posts. */
export interface SignInOptions {
  sso: boolean;
  local: boolean;
  signOut: string;
}

export function signInOptions(cfg: Config): SignInOptions {
  const sso = Boolean(cfg.oidcIssuer);
  return { sso, local: cfg.localLogin, signOut: sso ? LOGOUT_PATH : LOCAL_LOGOUT_PATH };
}

/** The page a query or body value names, else the audit page (the default of every SSO route). */
export const ssoPage = (value: unknown): SsoPage =>
  typeof value === 'string' && Object.hasOwn(SSO_PAGES, value) ? (value as SsoPage) : 'audit';

export interface PendingLogin {
  state: string;
  nonce: string;
  verifier: string;
  page: SsoPage;
  exp: number;
}

export interface SsoClient {
  config: oidc.Configuration;
  settings: Config;
  cookieKey: Buffer;
  /** The issuer's published keys (its jwks_uri, fetched and cached by jose), when it publishes them where we may fetch. */
  issuerKeys: JWTVerifyGetKey | undefined;
}

function clientSecret(cfg: Config): string {
  if (cfg.oidcClientSecretFile) return readFileSync(cfg.oidcClientSecretFile, 'utf8').trim();
  return cfg.oidcClientSecret ?? '';
}

const isLoopback = (url: URL) => ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);

/** Discover the issuer once. Plain http is allowed only for an issuer on loopback. */
export async function discoverSso(cfg: Config): Promise<SsoClient> {
  const issuer = new URL(cfg.oidcIssuer as string);
  const secret = clientSecret(cfg);
  const plainHttpAllowed = issuer.protocol === 'http:' && isLoopback(issuer);
  const options = plainHttpAllowed ? { execute: [oidc.allowInsecureRequests] } : {};
  const metadata = { client_secret: secret, [oidc.clockTolerance]: CLOCK_TOLERANCE_S };
  const config = await oidc.discovery(issuer, cfg.oidcClientId as string, metadata, undefined, options);
  // The cookie key is derived from the client secret, which every process of this gateway shares.
  const cookieKey = Buffer.from(hkdfSync('sha256', secret, 'fhir-gateway', 'sso pending sign-in', 32));
  const jwksUri = config.serverMetadata().jwks_uri;
  const keysUrl = jwksUri ? new URL(jwksUri) : undefined;
  const fetchable = keysUrl && (keysUrl.protocol === 'https:' || (plainHttpAllowed && keysUrl.protocol === 'http:'));
  return { config, settings: cfg, cookieKey, issuerKeys: fetchable ? createRemoteJWKSet(keysUrl) : undefined };
}

/**
 * The issuer, discovered on first use and shared by every SSO route: a
 * gateway starts while its issuer is down, and a failed discovery is tried
 * again on the next request (503 meanwhile).
 */
export function connectSso(cfg: Config, logger: Logger): () => Promise<SsoClient> {
  let client: Promise<SsoClient> | undefined;
  return async () => {
    client ??= discoverSso(cfg).then(
      (sso) => {
        const metadata = sso.config.serverMetadata();
        if (!metadata.backchannel_logout_supported || !sso.issuerKeys)
          logger.warn(
            { issuer: metadata.issuer },
            'the issuer does not offer back-channel logout: a sign-out elsewhere at the issuer leaves gateway sessions open until they lapse',
          );
        return sso;
      },
      (err: unknown) => {
        client = undefined;
        logger.warn({ err: (err as Error).message }, 'OpenID Connect discovery failed');
        throw new GatewayError('UNAVAILABLE', 'the single sign-on issuer cannot be reached; try again shortly');
      },
    );
    return client;
  };
}

export const redirectUri = (cfg: Config) => `${cfg.baseUrl}${CALLBACK_PATH}`;

/** Where to send the browser, and the pending sign-in to keep in its cookie. */
export async function startLogin(
  sso: SsoClient,
  page: SsoPage,
  now = Date.now(),
): Promise<{ url: URL; cookie: string }> {
  const pending: PendingLogin = {
    state: oidc.randomState(),
    nonce: oidc.randomNonce(),
    verifier: oidc.randomPKCECodeVerifier(),
    page,
    exp: now + PENDING_TTL_MS,
  };
  const url = oidc.buildAuthorizationUrl(sso.config, {
    redirect_uri: redirectUri(sso.settings),
    scope: 'openid profile',
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: await oidc.calculatePKCECodeChallenge(pending.verifier),
    code_challenge_method: 'S256',
  });
  return { url, cookie: sealPending(sso, pending) };
}

export function sealPending(sso: SsoClient, pending: PendingLogin): string {
  const body = Buffer.from(JSON.stringify(pending)).toString('base64url');
  return `${body}.${mac(sso, body)}`;
}

const mac = (sso: SsoClient, body: string) => createHmac('sha256', sso.cookieKey).update(body).digest('base64url');

/** The pending sign-in of a cookie, or undefined when it is absent, forged or expired. */
export function openPending(sso: SsoClient, value: string | undefined, now = Date.now()): PendingLogin | undefined {
  const [body, tag] = (value ?? '').split('.');
  if (!body || !tag) return undefined;
  const want = Buffer.from(mac(sso, body));
  const got = Buffer.from(tag);
  if (want.length !== got.length || !timingSafeEqual(want, got)) return undefined;
  const pending = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as PendingLogin;
  return pending.exp > now && pending.page in SSO_PAGES ? pending : undefined;
}

export interface SsoIdentity {
  name: string;
  subject: string;
  roles: AccountRole[];
  /** The issuer session this sign-in belongs to, which its back-channel logout names. */
  issuerSession: IssuerSession;
}

/** The longest sid or sub kept with a session or matched by a logout token. */
export const MAX_ISSUER_ID_LENGTH = 255;

/** A sid or sub the gateway can keep and match: plain text, not empty, bounded; else undefined. */
export const issuerId = (value: unknown): string | undefined =>
  isPlainIdentifier(value) && value.length <= MAX_ISSUER_ID_LENGTH ? value : undefined;

/** Exchange the code and validate the ID token; throws openid-client's error when anything is off. */
export async function finishLogin(sso: SsoClient, callbackUrl: URL, pending: PendingLogin): Promise<SsoIdentity> {
  const tokens = await oidc.authorizationCodeGrant(sso.config, callbackUrl, {
    pkceCodeVerifier: pending.verifier,
    expectedState: pending.state,
    expectedNonce: pending.nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims() as Record<string, unknown> | undefined;
  if (!claims) throw new Error('no ID token');
  const username = claims['preferred_username'];
  const subject = String(claims['sub']);
  const sid = issuerId(claims['sid']);
  return {
    name: typeof username === 'string' && username ? username : subject,
    subject,
    roles: mapRoles(sso.settings, claims[sso.settings.oidcRoleClaim]),
    issuerSession: { issuer: String(claims['iss']), subject, ...(sid ? { sid } : {}) },
  };
}

const ID_TOKEN_CLAIM_REASONS: Record<string, string> = {
  nonce: 'id_token_wrong_nonce',
  aud: 'id_token_wrong_audience',
  azp: 'id_token_wrong_audience',
  iss: 'id_token_wrong_issuer',
};

/**
 * Why openid-client refused a callback, in the audit trail's words (the
 * library's own code goes beside it): the issuer refused the code, or the ID
 * token is expired, names another sign-in (nonce), another client or issuer,
 * or does not validate at all.
 */
export function refusalReason(err: unknown): string {
  const e = err as { code?: unknown; cause?: { cause?: { claim?: unknown } } };
  const claim = String(e.cause?.cause?.claim ?? '');
  switch (e.code) {
    case 'OAUTH_RESPONSE_BODY_ERROR':
      return 'issuer_refused_code';
    case 'OAUTH_AUTHORIZATION_RESPONSE_ERROR':
      return 'issuer_returned_error';
    case 'OAUTH_JWT_TIMESTAMP_CHECK_FAILED':
      return claim === 'exp' ? 'id_token_expired' : 'id_token_time_invalid';
    case 'OAUTH_JWT_CLAIM_COMPARISON_FAILED':
      return ID_TOKEN_CLAIM_REASONS[claim] ?? 'id_token_invalid';
    default:
      return 'id_token_invalid';
  }
}

/** The gateway roles a role claim grants: a list of values, or one value. */
export function mapRoles(cfg: Config, claim: unknown): AccountRole[] {
  const values = Array.isArray(claim) ? claim : typeof claim === 'string' ? [claim] : [];
  const roles: AccountRole[] = [];
  if (values.includes(cfg.oidcComplianceRole)) roles.push('compliance');
  if (values.includes(cfg.oidcOperatorRole)) roles.push('operator');
  return roles;
}

/**
 * The issuer's end_session_endpoint URL, when it has one. Its state names the
 * page, so that one registered post-logout URI brings the person back to the
 * page they signed out of.
 */
export function endSessionUrl(sso: SsoClient, page: SsoPage): URL | undefined {
  if (!sso.config.serverMetadata().end_session_endpoint) return undefined;
  return oidc.buildEndSessionUrl(sso.config, {
    post_logout_redirect_uri: `${sso.settings.baseUrl}${SIGNED_OUT_PATH}`,
    client_id: sso.settings.oidcClientId as string,
    state: page,
  });
}
