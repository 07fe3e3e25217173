// The compliance officer's page. Verification runs here, in the browser, with
// the same verifier module as `gateway audit verify` (served from src/audit).
import { describeReport, verifyEvidencePack } from './lib/verify.ts';
import { rawFromDer } from './lib/note.ts';
import { sha256 } from './lib/sha256.ts';

const $ = (id) => document.getElementById(id);
const OUTCOME = { 0: 'success', 4: 'minor failure', 8: 'serious failure', 12: 'major failure' };
const MAX_PACK = 50000;

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

function showLogin() {
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
  try {
    const { user } = await api('/audit/ui/session');
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
  await start();
});
$('logout').addEventListener('click', async () => {
  await fetch('/audit/ui/logout', { method: 'POST' });
  showLogin();
});
$('filter').addEventListener('submit', (e) => search(e).catch((err) => ($('result-count').textContent = err.message)));
$('verify-trail').addEventListener('click', verifyTrail);
start();
