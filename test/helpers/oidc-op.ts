import { createServer, type Server } from 'node:http';
import Provider from 'oidc-provider';
import { freePort } from './ports.ts';

/** A person known to the test issuer, and the groups its ID token lists. */
export interface OpAccount {
  sub: string;
  username: string;
  groups: string[];
}

export interface TestOp {
  issuer: string;
  /** The account the next sign-in at the issuer is for (signs in without a form). */
  signInAs(account: OpAccount): void;
  close(): Promise<void>;
}

/**
 * A real, certified OpenID Provider (oidc-provider) on loopback. Its
 * interaction (login and consent) is finished programmatically for the
 * account chosen with signInAs, so a plain fetch client can run the flow.
 */
export async function startTestOp(
  clients: Array<{ id: string; secret: string; redirectUri: string }>,
): Promise<TestOp> {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const accounts = new Map<string, OpAccount>();
  let next: OpAccount | undefined;
  const provider = new Provider(issuer, {
    clients: clients.map((c) => ({
      client_id: c.id,
      client_secret: c.secret,
      redirect_uris: [c.redirectUri],
      post_logout_redirect_uris: [new URL('/', c.redirectUri).href],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    })),
    claims: { openid: ['sub'], profile: ['preferred_username', 'groups'] },
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    findAccount: async (_ctx: unknown, sub: string) => {
      const account = accounts.get(sub);
      if (!account) return undefined;
      return {
        accountId: sub,
        claims: async () => ({ sub, preferred_username: account.username, groups: account.groups }),
      };
    },
  });
  const callback = provider.callback();
  const server: Server = createServer(async (req, res) => {
    if (req.url?.startsWith('/interaction/')) {
      const details = await provider.interactionDetails(req, res);
      const account = next as OpAccount;
      accounts.set(account.sub, account);
      const grant = new provider.Grant({ accountId: account.sub, clientId: String(details.params['client_id']) });
      grant.addOIDCScope('openid profile');
      const grantId = await grant.save();
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId: account.sub }, consent: { grantId } },
        {
          mergeWithLastSubmission: false,
        },
      );
      return;
    }
    callback(req, res);
  });
  await new Promise<void>((ok) => server.listen(port, '127.0.0.1', ok));
  return {
    issuer,
    signInAs: (account) => {
      next = account;
    },
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}
