import type { AttemptSummary, DeliveryFilter, DeliverySummary } from '../outbound/delivery-admin.ts';
import type { CheckpointFreshness, KeyLine } from './key-inventory.ts';
import { FAILURE_WINDOW_HOURS, type PartnerHealth } from './partner-health.ts';

/**
 * The operator console as server-rendered HTML, and the two single sign-on
 * pages both browser pages pass through (signed in, refused): every value
 * escaped here, no inline script or style (the console's one script is
 * /console/console.js). Delivery rows carry ids, states, status codes and
 * error codes only, never content.
 */
const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export const esc = (v: unknown): string => String(v ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
const when = (d: Date | null | undefined): string => (d ? esc(d.toISOString().replace(/\.\d+Z$/, 'Z')) : '—');
const percent = (r: number | null): string => (r === null ? '—' : `${Math.round(r * 100)} %`);

interface Frame {
  /** The signed-in account, shown with a sign-out button that posts to `signOut`. */
  user?: string;
  signOut?: string;
  heading?: string;
  /** A same-origin address the browser goes on to at once (meta refresh, no script). */
  next?: string;
  /** The console's script; the single sign-on pages need none. */
  script?: boolean;
}

function frame(title: string, body: string, f: Frame = {}): string {
  const who = f.user
    ? `<span id="who">${esc(f.user)}</span> <button type="button" id="logout" data-sign-out="${esc(f.signOut)}">Sign out</button>`
    : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
${f.next ? `<meta http-equiv="refresh" content="0;url=${esc(f.next)}">\n` : ''}<title>${esc(title)}</title>
<link rel="stylesheet" href="/ui/page.css">
<link rel="stylesheet" href="/console/console.css">
${f.script === false ? '' : '<script type="module" src="/console/console.js"></script>\n'}</head>
<body>
<header><h1>${esc(f.heading ?? 'Gateway operator console')}</h1>${who}</header>
<main>
${body}
</main>
</body>
</html>
`;
}

/** The ways in a sign-in form offers (src/auth/sso.ts decides them from the configuration). */
export interface SignInChoice {
  sso: boolean;
  local: boolean;
}

export function loginPage(choice: SignInChoice): string {
  const sso = choice.sso
    ? '<p><a id="sso-login" class="sso" href="/auth/sso/login?page=console">Sign in with SSO</a></p>'
    : '';
  const local = choice.local
    ? `<p>${choice.sso ? 'Break-glass: an' : 'An'} operator account (<code>gateway audit users add --name NAME --role operator</code>).</p>
<form id="login-form">
<label>Name <input id="login-name" name="name" autocomplete="username" required></label>
<label>Password <input id="login-password" name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
<p id="login-error" role="alert"></p>
</form>
<p id="passkey-sign-in-link"><a href="/auth/mfa/">Sign in with a passkey</a></p>`
    : '';
  return frame(
    'Sign in — operator console',
    `<section id="login-view">
<h2>Sign in</h2>
${sso || local ? `${sso}${local}` : '<p>Sign-in is turned off on this gateway (no OIDC_ISSUER, LOCAL_LOGIN=off).</p>'}
</section>`,
  );
}

export function forbiddenPage(user: string, signOut: string): string {
  return frame(
    'Not an operator — operator console',
    `<section id="forbidden"><h2>Not an operator</h2><p>The account ${esc(user)} has no operator role.</p></section>`,
    { user, signOut },
  );
}

/**
 * The answer of a successful single sign-on: the session cookie, then on to
 * the page from here. A redirect would not do: the browser arrives from the
 * issuer's site, and a SameSite=Strict cookie is not sent on any hop of a
 * redirect chain that began on another site, so the page would ask for a
 * sign-in again. A navigation this page starts is same-site.
 */
export function signedInPage(heading: string, next: string): string {
  return frame(
    `Signed in — ${heading}`,
    `<section id="signed-in"><p>Signed in. <a href="${esc(next)}">Continue</a></p></section>`,
    { heading, next, script: false },
  );
}

/** A single sign-on the gateway refused, for a person: why, and the way back to the sign-in form. */
export function ssoRefusedPage(heading: string, message: string, back: string): string {
  return frame(
    `Sign-in refused — ${heading}`,
    `<section id="sso-refused"><h2>Sign-in refused</h2><p id="refusal">${esc(message)}</p>
<p><a id="back" href="${esc(back)}">Back to the sign-in page</a></p></section>`,
    { heading, script: false },
  );
}

export interface ConsoleView {
  user: string;
  signOut: string;
  partners: PartnerHealth[];
  filter: DeliveryFilter;
  deliveries: DeliverySummary[];
  attempts: Map<string, AttemptSummary[]>;
  keys: KeyLine[];
  checkpoint: CheckpointFreshness;
}

/** A partner that stopped publishing its post-quantum keys: its v1 deliveries wait for this decision. */
const downgradeNote = (h: PartnerHealth): string =>
  h.partner.pqDowngrade === 'held'
    ? ' <span class="bad" title="it no longer publishes its post-quantum keys; its v1 deliveries wait">v1 held</span>'
    : h.partner.pqDowngrade === 'allow-v1'
      ? ' <span title="an operator or PQ_DOWNGRADE allowed v1 until its post-quantum keys return">v1 allowed</span>'
      : '';

const downgradeButton = (h: PartnerHealth): string =>
  h.partner.pqDowngrade === null
    ? ''
    : h.partner.pqDowngrade === 'held'
      ? ` <button type="button" class="partner-action" data-action="downgrade/allow-v1" data-id="${esc(h.partner.id)}">Allow v1</button>`
      : ` <button type="button" class="partner-action" data-action="downgrade/hold" data-id="${esc(h.partner.id)}">Hold v1</button>`;

function partnersSection(partners: PartnerHealth[]): string {
  const rows = partners.map(
    (h) => `<tr data-partner="${esc(h.partner.id)}">
<td>${esc(h.partner.id)}</td><td class="status-${esc(h.partner.status)}">${esc(h.partner.status)}${downgradeNote(h)}</td>
<td>${when(h.lastDelivered)}</td><td>${when(h.oldestPending)} (${h.pending})</td><td>${percent(h.failureRate)}</td>
<td>${when(h.keysCheckedAt)}${h.keysOk === false ? ' <span class="bad">refresh failing</span>' : ''}</td>
<td>${h.log ? (h.log.inconsistency ? `<span class="bad" title="${esc(h.log.inconsistency)}">inconsistent</span>` : `consistent at ${esc(h.log.treeSize)}`) : '-'}</td>
<td><button type="button" class="partner-action" data-action="${h.partner.status === 'suspended' ? 'resume' : 'suspend'}" data-id="${esc(h.partner.id)}">${h.partner.status === 'suspended' ? 'Resume' : 'Suspend'}</button>${downgradeButton(h)}</td>
</tr>`,
  );
  return `<section id="partners"><h2>Partners</h2>
<table><thead><tr><th>partner</th><th>status</th><th>last delivery</th><th>oldest pending (count)</th><th>failed, last ${FAILURE_WINDOW_HOURS} h</th><th>keys refreshed</th><th>audit log</th><th></th></tr></thead>
<tbody>${rows.join('\n') || '<tr><td colspan="8">no partners</td></tr>'}</tbody></table></section>`;
}

function attemptList(attempts: AttemptSummary[] | undefined): string {
  if (!attempts?.length) return '—';
  return `<ol class="attempts">${attempts
    .map(
      (a) =>
        `<li>${when(a.started_at)} ${esc(a.outcome)}${a.http_status === null ? '' : ` HTTP ${esc(a.http_status)}`}${a.error && a.error !== `HTTP ${a.http_status}` ? ` (${esc(a.error)})` : ''}, ${esc(a.duration_ms)} ms</li>`,
    )
    .join('')}</ol>`;
}

function deliveriesSection(v: ConsoleView): string {
  const f = v.filter;
  const option = (s: string) => `<option value="${s}"${f.state === s ? ' selected' : ''}>${s || 'any'}</option>`;
  const partnerOption = (id: string) =>
    `<option value="${esc(id)}"${f.partner === id ? ' selected' : ''}>${esc(id)}</option>`;
  const rows = v.deliveries.map(
    (d) => `<tr data-delivery="${esc(d.id)}" data-state="${esc(d.state)}">
<td><code>${esc(d.id)}</code></td><td>${esc(d.kind)}</td><td>${esc(d.partner_id)}</td><td class="state-${esc(d.state)}">${esc(d.state)}</td>
<td>${esc(d.attempts)}</td><td>${esc(d.last_error ?? '')}</td><td>${when(d.updated_at)}</td><td>${attemptList(v.attempts.get(d.id))}</td>
<td>${d.state === 'failed' ? `<button type="button" class="retry" data-id="${esc(d.id)}">Retry</button>` : ''}</td>
</tr>`,
  );
  return `<section id="deliveries"><h2>Deliveries</h2>
<form id="filter" method="get" action="/console/">
<label>State <select name="state">${['', 'pending', 'delivered', 'failed'].map(option).join('')}</select></label>
<label>Partner <select name="partner"><option value="">any</option>${v.partners.map((p) => partnerOption(p.partner.id)).join('')}</select></label>
<label>Changed from <input type="datetime-local" name="since" value="${esc(localValue(f.since))}"></label>
<label>to <input type="datetime-local" name="until" value="${esc(localValue(f.until))}"></label>
<button type="submit">Show</button>
</form>
<p id="action-result" role="status"></p>
<table><thead><tr><th>delivery</th><th>kind</th><th>partner</th><th>state</th><th>attempts</th><th>last error</th><th>changed</th><th>attempt history</th><th></th></tr></thead>
<tbody>${rows.join('\n') || '<tr><td colspan="9">no deliveries match</td></tr>'}</tbody></table></section>`;
}

/** A filter instant as the datetime-local control shows it (UTC, minutes). */
const localValue = (d: Date | undefined): string => (d ? d.toISOString().slice(0, 16) : '');

function keysSection(keys: KeyLine[], cp: CheckpointFreshness): string {
  const rows = keys.map(
    (k) =>
      `<tr><td><code>${esc(k.kid)}</code></td><td>${esc(k.use)}</td><td>${esc(k.state)}</td><td>${when(k.activatedAt)}</td><td>${when(k.nextRotation)}</td><td>${when(k.destroyAfter)}</td></tr>`,
  );
  return `<section id="keys"><h2>Gateway keys</h2>
<table><thead><tr><th>kid</th><th>use</th><th>state</th><th>activated</th><th>next rotation</th><th>destroy after</th></tr></thead>
<tbody>${rows.join('\n')}</tbody></table></section>
<section id="checkpoint"><h2>Audit checkpoint</h2>
<p>Latest signed checkpoint: <span id="checkpoint-issued">${when(cp.issuedAt)}</span>, covering ${esc(cp.treeSize)} entries; <span id="checkpoint-uncovered">${esc(cp.uncovered)}</span> entries since then not yet covered.</p></section>`;
}

/** Where an operator enrols and reviews second factors (src/mfa/page.ts). */
const SIGN_IN_SECURITY = `<p id="sign-in-security"><a href="/auth/mfa/">Sign-in security: passkeys, authenticator app, recovery codes</a></p>`;

export function consolePage(v: ConsoleView): string {
  return frame(
    'Operator console',
    `${partnersSection(v.partners)}\n${deliveriesSection(v)}\n${keysSection(v.keys, v.checkpoint)}\n${SIGN_IN_SECURITY}`,
    { user: v.user, signOut: v.signOut },
  );
}
