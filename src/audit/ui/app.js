// The compliance officer's page. Verification runs here, in the browser, with
// the same verifier module as `gateway audit verify` (served from src/audit).
import { describeReport, verifyEvidencePack } from './lib/verify.ts';
import { rawFromDer } from './lib/note.ts';
import { sha256 } from './lib/sha256.ts';
import { describeDisclosureVerification, verifyDisclosureReport } from './lib/disclosures.ts';

const $ = (id) => document.getElementById(id);
const OUTCOME = { 0: 'success', 4: 'minor failure', 8: 'serious failure', 12: 'major failure' };
const MAX_PACK = 50000;
let signedIn = '';

const deps = {
  sha256,
  async verifySignature(jwk, data, der) {
    try {
      const key = await crypto.subtle.importKey(
        'jwk',
        { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, ext: true },
        { name: 'ECDSA', namedCurve: 'P-256' },
        false,
        ['verify'],
      );
      return await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, rawFromDer(der), data);
    } catch {
      return false;
    }
  },
};

async function api(path, options = {}) {
  const res = await fetch(path, { credentials: 'same-origin', ...options });
  if (res.status === 401) {
    showLogin();
    throw new Error('signed out');
  }
  const body = res.status === 204 ? null : await res.json();
  if (!res.ok) throw new Error(body?.issue?.[0]?.diagnostics ?? `HTTP ${res.status}`);
  return body;
}

// What the sign-in form offers and where sign-out posts (GET /audit/ui/sign-in); local accounts until known.
let signIn = { sso: false, local: true, signOut: '/audit/ui/logout' };

async function loadSignIn() {
  try {
    const res = await fetch('/audit/ui/sign-in', { credentials: 'same-origin' });
    if (res.ok) signIn = await res.json();
  } catch {
    // keep the local form: the gateway answers it either way
  }
}

function showLogin() {
  $('sso-login').hidden = !signIn.sso;
  $('login-form').hidden = !signIn.local;
  $('no-sign-in').hidden = signIn.sso || signIn.local;
  $('login-view').hidden = false;
  $('main-view').hidden = true;
  $('logout').hidden = true;
  $('who').textContent = '';
}

function tamper(message) {
  $('verified').hidden = true;
  $('tamper-alert').hidden = false;
  $('tamper-alert').textContent = `Tamper alert: ${message}`;
}

function verified(message) {
  $('tamper-alert').hidden = true;
  $('verified').hidden = false;
  $('verified').textContent = message;
}

async function start() {
  await loadSignIn();
  try {
    const { user } = await api('/audit/ui/session');
    signedIn = user;
    $('who').textContent = `Signed in as ${user}`;
    $('login-view').hidden = true;
    $('main-view').hidden = false;
    $('logout').hidden = false;
    await Promise.all([loadCheckpoint(), search()]);
  } catch (err) {
    if (err.message !== 'signed out') console.error(err);
  }
}

async function loadCheckpoint() {
  try {
    const cp = await api('/audit/checkpoint');
    $('checkpoint-info').textContent =
      `Latest signed checkpoint: ${cp.treeSize} entries, root ${cp.rootHash}, issued ${cp.issuedAt}, audit key ${cp.keyId}.`;
  } catch (err) {
    $('checkpoint-info').textContent = `No checkpoint: ${err.message}`;
  }
}

async function search(event) {
  event?.preventDefault();
  const q = new URLSearchParams({ _count: '100' });
  if ($('f-from').value) q.append('date', `ge${$('f-from').value}`);
  if ($('f-to').value) q.append('date', `le${$('f-to').value}`);
  for (const [param, id] of [
    ['type', 'f-type'],
    ['outcome', 'f-outcome'],
    ['entity', 'f-entity'],
    ['agent', 'f-agent'],
  ]) {
    if ($(id).value.trim()) q.set(param, $(id).value.trim());
  }
  const bundle = await api(`/fhir/AuditEvent?${q}`);
  $('result-count').textContent =
    `${bundle.total} event(s)${bundle.total > (bundle.entry?.length ?? 0) ? `, showing the newest ${bundle.entry.length}` : ''}`;
  const tbody = $('events').tBodies[0];
  tbody.replaceChildren();
  for (const { resource: e } of bundle.entry ?? []) {
    const tr = document.createElement('tr');
    tr.dataset.index = e.id;
    const cells = [
      e.id,
      e.recorded,
      // The gateway's own event type follows the BALP pattern's standard subtypes.
      e.subtype?.find((s) => s.system === 'urn:fhir-gateway:audit-event-type')?.code ?? e.type.code,
      OUTCOME[e.outcome] ?? e.outcome,
      e.agent
        ?.filter((a) => a.requestor)
        .map((a) => a.who?.identifier?.value)
        .join(', ') ?? '',
      e.entity
        ?.map((x) => x.what?.identifier)
        .filter((i) => i?.system?.startsWith('urn:fhir-gateway:entity:'))
        .map((i) => i.value)
        .join(', ') ?? '',
    ];
    for (const text of cells) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.append(td);
    }
    tr.addEventListener('click', () => openEvent(Number(e.id)));
    tbody.append(tr);
  }
}

async function openEvent(index) {
  $('detail').hidden = false;
  $('detail-index').textContent = `#${index}`;
  $('proof-status').textContent = 'Checking the proof…';
  $('proof-status').className = '';
  const [event, pack] = await Promise.all([
    api(`/fhir/AuditEvent/${index}`),
    api(`/audit/export?from=${index}&to=${index + 1}`),
  ]);
  $('detail-json').textContent = JSON.stringify(event, null, 2);
  const report = await verifyEvidencePack(pack, deps);
  if (report.ok) {
    $('proof-status').className = 'ok';
    $('proof-status').textContent =
      `Proven: entry ${index} is in the checkpoint of ${report.anchor.size} entries signed ${report.anchor.issuedAt}; ${report.checkpointsVerified} checkpoint signature(s) and their consistency verified in this browser.`;
  } else {
    $('proof-status').className = 'bad';
    $('proof-status').textContent = describeReport(report);
    tamper(describeReport(report));
  }
}

async function verifyTrail() {
  $('verify-trail').disabled = true;
  $('verified').hidden = true;
  try {
    const cp = await api('/audit/checkpoint');
    let total = 0;
    let keys = [];
    for (let from = 0; from < cp.treeSize; from += MAX_PACK) {
      const to = Math.min(cp.treeSize, from + MAX_PACK);
      const report = await verifyEvidencePack(await api(`/audit/export?from=${from}&to=${to}`), deps);
      if (!report.ok) return tamper(describeReport(report));
      total += report.entriesVerified;
      keys = report.keyIds;
    }
    verified(
      `Trail verified in this browser: ${total} entries, every signature, inclusion proof and the consistency chain hold (audit key ${keys.join(', ')}: compare it with the key id recorded at installation).`,
    );
  } catch (err) {
    tamper(`verification could not complete: ${err.message}`);
  } finally {
    $('verify-trail').disabled = false;
  }
}

const RECEIPT = { received: 'received', pending: 'not yet received', failed: 'delivery failed' };
let lastReport;

function cellRow(tbody, cells) {
  const tr = document.createElement('tr');
  for (const text of cells) {
    const td = document.createElement('td');
    td.textContent = text;
    tr.append(td);
  }
  tbody.append(tr);
}

function receiptText(r) {
  const status = RECEIPT[r.status] ?? r.status;
  if (r.status !== 'received') return status;
  const at = r.at ? ` ${r.at}` : '';
  return `${status}${at} (${r.entry !== undefined ? `proven by entry ${r.entry}` : 'stated, no receipt entry'})`;
}

// The identifier is shown as typed: the server's answer names only its blinds.
async function accounting(event) {
  event.preventDefault();
  $('disclosure-error').hidden = true;
  const system = $('d-system').value.trim();
  const value = $('d-value').value.trim();
  const body = { system, value };
  if ($('d-from').value) body.from = $('d-from').value;
  if ($('d-to').value) body.to = $('d-to').value;
  const report = await api('/audit/disclosures', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  lastReport = report;
  $('report').hidden = false;
  $('report-patient').textContent = `${system}|${value}`;
  $('report-period').textContent = `${report.period.start} to ${report.period.end} (end excluded)`;
  $('report-generated').textContent = `${report.generatedAt} by ${signedIn}`;
  $('report-origin').textContent = report.origin;
  $('report-count').textContent = `${report.disclosures.length} disclosure(s)`;
  const tbody = $('disclosures').tBodies[0];
  tbody.replaceChildren();
  for (const d of report.disclosures) {
    cellRow(tbody, [
      d.recorded,
      d.recipientName ? `${d.recipientName} (${d.recipient})` : d.recipient,
      d.purposeOfUse.length ? d.purposeOfUse.join(', ') : 'not stated',
      d.exchange,
      d.delivery,
      receiptText(d.receipt),
      String(d.entry),
    ]);
  }
  $('report-proof').className = '';
  $('report-proof').textContent = 'Checking the proofs…';
  const check = await verifyDisclosureReport(report, deps);
  $('report-proof').className = check.ok ? 'ok' : 'bad';
  $('report-proof').textContent = check.ok
    ? `Proven in this browser: every disclosure listed is in the checkpoint of ${check.anchor.size} entries signed ${check.anchor.issuedAt} (audit key ${check.keyIds.join(', ')}).`
    : describeDisclosureVerification(check);
  if (!check.ok) tamper(describeDisclosureVerification(check));
}

function downloadReport() {
  if (!lastReport) return;
  const blob = new Blob([JSON.stringify(lastReport, null, 1)], { type: 'application/json' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = `disclosures-${lastReport.generatedAt.replace(/[:.]/g, '-')}.json`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
}

$('disclosure-form').addEventListener('submit', (e) =>
  accounting(e).catch((err) => {
    $('disclosure-error').hidden = false;
    $('disclosure-error').textContent = err.message;
  }),
);
$('report-print').addEventListener('click', () => window.print());
$('report-download').addEventListener('click', downloadReport);

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('login-error').hidden = true;
  const res = await fetch('/audit/ui/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: $('login-name').value, password: $('login-password').value }),
  });
  if (!res.ok) {
    $('login-error').hidden = false;
    $('login-error').textContent = 'Sign-in failed: unknown user or wrong password.';
    return;
  }
  $('login-password').value = '';
  // A second factor or an enrolment is due: the sign-in continues on the sign-in security page.
  const { next } = await res.json();
  if (next) return location.assign(next);
  await start();
});
// An issuer session is ended at the issuer too, which sends the browser back here; a local session just ends.
$('logout').addEventListener('click', async () => {
  $('logout').disabled = true;
  try {
    const res = await fetch(signIn.signOut, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ page: 'audit' }),
    });
    const answer = res.status === 200 ? await res.json() : {};
    if (answer.redirect) return location.assign(answer.redirect);
  } finally {
    $('logout').disabled = false;
  }
  showLogin();
});
$('filter').addEventListener('submit', (e) => search(e).catch((err) => ($('result-count').textContent = err.message)));
$('verify-trail').addEventListener('click', verifyTrail);
start();
