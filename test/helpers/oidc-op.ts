import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import Provider from 'oidc-provider';
import { freePort } from './ports.ts';

/** A person known to the test issuer, and the groups its ID token lists. */
export interface OpAccount {
  sub: string;
  username: string;
  groups: string[];
}

export type IdTokenClaims = Record<string, unknown> & { exp: number; iat: number; nonce?: string };

/** One back-channel logout the provider sent: to which client, for which session, and whether it was taken (200). */
export interface BackchannelDelivery {
  clientId: string;
  sub: string;
  sid: string;
  ok: boolean;
  /** Why it was not taken. */
  error?: string;
}

export interface TestOp {
  /** On `localhost`: another site than the gateways on 127.0.0.1, as an issuer is in production. */
  issuer: string;
  /**
   * The account the next sign-ins at the issuer are for, finished without a
   * form. Without one, the sign-in goes through the provider's own login and
   * consent pages, where a known account's `sub` is typed as the login.
   */
  signInAs(account?: OpAccount): void;
  /** An account the login pages know. */
  addAccount(account: OpAccount): void;
  /**
   * The next ID token the token endpoint answers has its claims changed by
   * `change` and is signed again with the issuer's own published key: an
   * issuer (or a replay) that hands out an expired token or another sign-in's.
   */
  alterNextIdToken(change: (claims: IdTokenClaims) => IdTokenClaims): void;
  /** Every ID token the token endpoint answered, in order (the id_token_hint of a sign-out at the issuer). */
  idTokens: string[];
  /** Every back-channel logout the provider sent (each client registers PUBLIC_URL/auth/sso/backchannel-logout). */
  backchannelDeliveries: BackchannelDelivery[];
  /**
   * A compact RS256 JWS of `claims`, signed with the issuer's own published key
   * (under its kid) unless `key` is given: a logout token as the issuer would
   * send it, or one it never sent.
   */
  sign(claims: Record<string, unknown>, options?: { header?: Record<string, unknown>; key?: KeyObject }): string;
  close(): Promise<void>;
}

const KID = 'test-op-rs256';

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** A compact RS256 JWS: the encoded header and claims, signed with `key`. */
function signCompact(encodedHeader: string, claims: unknown, key: KeyObject): string {
  const input = `${encodedHeader}.${b64(claims)}`;
  return `${input}.${sign('sha256', Buffer.from(input), key).toString('base64url')}`;
}

/** A compact JWS of `claims` with the issuer's key and the header it signs with. */
function resign(idToken: string, key: KeyObject, change: (claims: IdTokenClaims) => IdTokenClaims): string {
  const [header, payload] = idToken.split('.');
  const claims = change(JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8')) as IdTokenClaims);
  return signCompact(header!, claims, key);
}

/**
 * A real, certified OpenID Provider (oidc-provider) on loopback. After
 * signInAs, its interaction (login and consent) is finished programmatically,
 * so a plain fetch client can run the flow; without it, a browser signs in at
 * the provider's own development login and consent pages.
 */
export async function startTestOp(
  clients: Array<{ id: string; secret: string; redirectUri: string }>,
): Promise<TestOp> {
  const port = await freePort();
  const issuer = `http://localhost:${port}`;
  const accounts = new Map<string, OpAccount>();
  let next: OpAccount | undefined;
  let alterNext: ((claims: IdTokenClaims) => IdTokenClaims) | undefined;
  const idTokens: string[] = [];
  const backchannelDeliveries: BackchannelDelivery[] = [];
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const provider = new Provider(issuer, {
    clients: clients.map((c) => ({
      client_id: c.id,
      client_secret: c.secret,
      redirect_uris: [c.redirectUri],
      post_logout_redirect_uris: [new URL('/auth/sso/signed-out', c.redirectUri).href],
      // Back-channel logout to the gateway, with the sid in ID and logout tokens.
      backchannel_logout_uri: new URL('/auth/sso/backchannel-logout', c.redirectUri).href,
      backchannel_logout_session_required: true,
      grant_types: ['authorization_code'],
      response_types: ['code'],
    })),
    jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: KID, use: 'sig', alg: 'RS256' }] },
    claims: { openid: ['sub'], profile: ['preferred_username', 'groups'] },
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    // The provider's own requests (its back-channel logouts) go to gateways on loopback, which its
    // special-use address guard (a dispatcher of its own) would refuse: plain fetch instead.
    fetch: (url: URL | string, options: RequestInit & { dispatcher?: unknown }) => {
      const { dispatcher: _guard, ...plain } = options;
      return fetch(url, plain);
    },
    // The provider's own login and consent pages, at /interaction/:uid; back-channel logout to the clients.
    features: { devInteractions: { enabled: true }, backchannelLogout: { enabled: true } },
    ttl: { AccessToken: 600, AuthorizationCode: 60, Grant: 3600, IdToken: 300, Interaction: 600, Session: 3600 },
    findAccount: async (_ctx: unknown, sub: string) => {
      const account = accounts.get(sub);
      if (!account) return undefined;
      return {
        accountId: sub,
        claims: async () => ({ sub, preferred_username: account.username, groups: account.groups }),
      };
    },
  });
  // Post-processing of the token endpoint's answer, oidc-provider's own extension point.
  provider.use(async (ctx: { oidc?: { route?: string }; body?: unknown }, step: () => Promise<void>) => {
    await step();
    const body = ctx.body as { id_token?: unknown } | undefined;
    if (alterNext && ctx.oidc?.route === 'token' && typeof body?.id_token === 'string') {
      ctx.body = { ...body, id_token: resign(body.id_token, privateKey, alterNext) };
      alterNext = undefined;
    }
    const answered = ctx.body as { id_token?: unknown } | undefined;
    if (ctx.oidc?.route === 'token' && typeof answered?.id_token === 'string') idTokens.push(answered.id_token);
  });
  type Client = { clientId: string };
  provider.on('backchannel.success', (_ctx: unknown, client: Client, sub: string, sid: string) => {
    backchannelDeliveries.push({ clientId: client.clientId, sub, sid, ok: true });
  });
  provider.on('backchannel.error', (_ctx: unknown, err: Error, client: Client, sub: string, sid: string) => {
    backchannelDeliveries.push({ clientId: client.clientId, sub, sid, ok: false, error: err.message });
  });
  const callback = provider.callback();
  const server: Server = createServer(async (req, res) => {
    if (next && req.url?.startsWith('/interaction/')) {
      const details = await provider.interactionDetails(req, res);
      const account = next;
      const grant = new provider.Grant({ accountId: account.sub, clientId: String(details.params['client_id']) });
      grant.addOIDCScope('openid profile');
      const grantId = await grant.save();
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId: account.sub }, consent: { grantId } },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    callback(req, res);
  });
  await new Promise<void>((ok) => server.listen(port, '127.0.0.1', ok));
  return {
    issuer,
    signInAs: (account) => {
      if (account) accounts.set(account.sub, account);
      next = account;
    },
    addAccount: (account) => {
      accounts.set(account.sub, account);
    },
    alterNextIdToken: (change) => {
      alterNext = change;
    },
    idTokens,
    backchannelDeliveries,
    sign: (claims, options = {}) =>
      signCompact(b64({ alg: 'RS256', kid: KID, ...options.header }), claims, options.key ?? privateKey),
    close: () =>
      new Promise<void>((ok) => {
        server.close(() => ok());
        server.closeAllConnections();
      }),
  };
}
