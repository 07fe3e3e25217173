import { esc } from '../console/page.ts';
import type { FactorSummary, PasskeyListing } from './factor-store.ts';

/**
 * The sign-in security page (/auth/mfa/), rendered on the server with every
 * value escaped; its one script (/auth/mfa/mfa.js) runs the WebAuthn
 * ceremonies and the code forms as same-origin JSON POSTs. One page for
 * every step: a passkey sign-in, the second factor, enrolment and, once
 * signed in, the account's factors.
 */
export interface PendingTotpView {
  key: string;
  qrSvg: string;
}

export type MfaView =
  | { kind: 'passkey-sign-in' }
  | { kind: 'second-factor'; user: string; factors: FactorSummary }
  | { kind: 'enrol'; user: string; pendingTotp?: PendingTotpView }
  | {
      kind: 'factors';
      user: string;
      home: string;
      factors: FactorSummary;
      passkeys: PasskeyListing[];
      pendingTotp?: PendingTotpView;
    }
  | { kind: 'single-sign-on'; user: string; home: string };

const when = (d: Date | null): string => (d ? esc(d.toISOString().replace(/\.\d+Z$/, 'Z')) : 'never');

function frame(title: string, body: string, next: string, user?: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<link rel="stylesheet" href="/ui/page.css">
<link rel="stylesheet" href="/auth/mfa/mfa.css">
<script type="module" src="/auth/mfa/mfa.js"></script>
</head>
<body>
<header><h1>Sign-in security</h1>${user ? `<span id="who">${esc(user)}</span>` : ''}</header>
<main id="mfa" data-next="${esc(next)}">
<p id="mfa-error" role="alert" hidden></p>
${body}
<section id="recovery-codes" hidden>
<h2>Your recovery codes</h2>
<p>Each code signs you in once when you cannot use your passkey or authenticator app. They are shown only now: store them somewhere safe, away from this device.</p>
<ol id="recovery-code-list"></ol>
<button type="button" id="recovery-codes-saved">I have stored them: continue</button>
</section>
</main>
</body>
</html>
`;
}

const button = (id: string, text: string) => `<button type="button" id="${id}">${esc(text)}</button>`;

function totpEnrolment(pending: PendingTotpView | undefined): string {
  if (!pending)
    return `<section id="totp-enrol"><h3>Authenticator app</h3>
<p>An app that shows six-digit codes (RFC 6238 TOTP), for when no passkey is at hand.</p>
${button('start-totp', 'Set up an authenticator app')}</section>`;
  return `<section id="totp-enrol"><h3>Authenticator app</h3>
<p>Scan this code with the app, or type the key by hand, then enter the code the app shows.</p>
<div id="totp-qr">${pending.qrSvg}</div>
<p>Key: <code id="totp-key">${esc(pending.key)}</code></p>
<form id="totp-confirm-form">
<label>Code <input id="totp-confirm-code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6" required></label>
<button type="submit">Confirm</button>
</form></section>`;
}

function enrolSection(pending: PendingTotpView | undefined, totpEnrolled: boolean): string {
  return `<section id="enrol"><h2>Add a second factor</h2>
<section id="passkey-enrol"><h3>Passkey</h3>
<p>This device's screen lock, a phone or a security key. Recommended: it cannot be phished.</p>
${button('add-passkey', 'Add a passkey')}</section>
${totpEnrolled ? '' : totpEnrolment(pending)}
</section>`;
}

export function mfaPage(view: MfaView): string {
  switch (view.kind) {
    case 'passkey-sign-in':
      return frame(
        'Sign in with a passkey',
        `<section id="passkey-sign-in"><h2>Sign in with a passkey</h2>
<p>For a gateway account that has a passkey. Otherwise sign in with your name and password on the <a href="/audit/ui/">audit page</a> or the <a href="/console/">console</a>.</p>
${button('passkey-sign-in-button', 'Sign in with a passkey')}</section>`,
        '/audit/ui/',
      );
    case 'second-factor': {
      const f = view.factors;
      return frame(
        'Second factor',
        `<section id="second-factor"><h2>Confirm it is you</h2>
${f.passkeys > 0 ? `<p>${button('use-passkey', 'Use my passkey')}</p>` : ''}
${
  f.totp
    ? `<form id="totp-form"><label>Code from the authenticator app <input id="totp-code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6" required></label>
<button type="submit">Continue</button></form>`
    : ''
}
${
  f.recoveryCodes > 0
    ? `<details id="recovery"><summary>Use a recovery code</summary><form id="recovery-form"><label>Recovery code <input id="recovery-code" name="code" autocomplete="off" required></label>
<button type="submit">Continue</button></form></details>`
    : ''
}
<p>Lost every factor? An administrator can reset them (<code>gateway audit users reset-factors NAME</code>).</p></section>`,
        '/auth/mfa/',
        view.user,
      );
    }
    case 'enrol':
      return frame(
        'Set up a second factor',
        `<p id="enrol-required">This gateway requires a second factor for its own accounts: set one up to continue.</p>
${enrolSection(view.pendingTotp, false)}`,
        '/auth/mfa/',
        view.user,
      );
    case 'factors': {
      const rows = view.passkeys.map(
        (p) =>
          `<li data-credential="${esc(p.credentialId)}">passkey added ${when(p.createdAt)}, last used ${when(p.lastUsedAt)}${p.backedUp ? ' (synced)' : ''}</li>`,
      );
      return frame(
        'Sign-in security',
        `<section id="factors"><h2>Your factors</h2>
<ul id="passkey-list">${rows.join('') || '<li>no passkey</li>'}</ul>
<p id="totp-status">Authenticator app: ${view.factors.totp ? 'enrolled' : 'none'}</p>
<p id="recovery-status">Recovery codes left: ${esc(view.factors.recoveryCodes)}</p>
${view.factors.passkeys > 0 || view.factors.totp ? button('renew-recovery-codes', 'New recovery codes') : ''}
<p><a href="${esc(view.home)}">Back</a></p></section>
${enrolSection(view.pendingTotp, view.factors.totp)}`,
        view.home,
        view.user,
      );
    }
    case 'single-sign-on':
      return frame(
        'Sign-in security',
        `<section id="single-sign-on"><h2>Single sign-on</h2><p>You signed in through your organisation's identity provider, which asks for your second factor.</p>
<p><a href="${esc(view.home)}">Back</a></p></section>`,
        view.home,
        view.user,
      );
  }
}
