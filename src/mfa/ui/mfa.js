// The sign-in security page's one script: WebAuthn ceremonies (passkeys) and the code forms.
import { $, post } from '/ui/page.js';
const main = $('#mfa');

const toBytes = (b64url) => {
  const b64 = b64url.replace(/-/g, '+').replace(/_/g, '/');
  return Uint8Array.from(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0));
};
const toB64url = (buffer) =>
  btoa(String.fromCharCode(...new Uint8Array(buffer)))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '');

function fail(message) {
  const el = $('#mfa-error');
  el.hidden = false;
  el.textContent = message;
}

/** Where to go after a step: shows recovery codes first when the answer carries them (they are shown once). */
function done(answer) {
  const next = answer.next ?? main.dataset.next;
  if (!answer.recoveryCodes) return location.assign(next);
  for (const section of main.querySelectorAll('section')) section.hidden = section.id !== 'recovery-codes';
  const list = $('#recovery-code-list');
  list.replaceChildren(
    ...answer.recoveryCodes.map((code) => {
      const li = document.createElement('li');
      const c = document.createElement('code');
      c.textContent = code;
      li.append(c);
      return li;
    }),
  );
  $('#recovery-codes').hidden = false;
  $('#recovery-codes-saved').addEventListener('click', () => location.assign(next));
}

async function createPasskey() {
  const options = await post('/auth/mfa/passkey/registration-options');
  const credential = await navigator.credentials.create({
    publicKey: {
      ...options,
      challenge: toBytes(options.challenge),
      user: { ...options.user, id: toBytes(options.user.id) },
      excludeCredentials: (options.excludeCredentials ?? []).map((c) => ({ ...c, id: toBytes(c.id) })),
    },
  });
  return {
    id: credential.id,
    rawId: toB64url(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment ?? undefined,
    clientExtensionResults: credential.getClientExtensionResults(),
    response: {
      clientDataJSON: toB64url(credential.response.clientDataJSON),
      attestationObject: toB64url(credential.response.attestationObject),
      transports: credential.response.getTransports?.() ?? [],
    },
  };
}

async function getPasskey() {
  const options = await post('/auth/mfa/passkey/authentication-options');
  const credential = await navigator.credentials.get({
    publicKey: {
      ...options,
      challenge: toBytes(options.challenge),
      allowCredentials: (options.allowCredentials ?? []).map((c) => ({ ...c, id: toBytes(c.id) })),
    },
  });
  const r = credential.response;
  return {
    id: credential.id,
    rawId: toB64url(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment ?? undefined,
    clientExtensionResults: credential.getClientExtensionResults(),
    response: {
      clientDataJSON: toB64url(r.clientDataJSON),
      authenticatorData: toB64url(r.authenticatorData),
      signature: toB64url(r.signature),
      ...(r.userHandle ? { userHandle: toB64url(r.userHandle) } : {}),
    },
  };
}

function onClick(selector, action) {
  const button = $(selector);
  button?.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await action();
    } catch (err) {
      fail(err.name === 'NotAllowedError' ? 'The passkey request was cancelled or timed out.' : err.message);
    } finally {
      button.disabled = false;
    }
  });
}

function onSubmit(selector, input, url) {
  const form = $(selector);
  form?.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      done(await post(url, { code: $(input).value.trim() }));
    } catch (err) {
      $(input).value = '';
      fail(err.message);
    }
  });
}

onClick('#add-passkey', async () => done(await post('/auth/mfa/passkey/registration', await createPasskey())));
onClick('#use-passkey', async () => done(await post('/auth/mfa/passkey/authentication', await getPasskey())));
onClick('#passkey-sign-in-button', async () =>
  done(await post('/auth/mfa/passkey/authentication', await getPasskey())),
);
onClick('#start-totp', async () => {
  await post('/auth/mfa/totp/enrolment');
  location.reload();
});
onClick('#renew-recovery-codes', async () => done(await post('/auth/mfa/recovery-codes')));
onSubmit('#totp-confirm-form', '#totp-confirm-code', '/auth/mfa/totp/confirmation');
onSubmit('#totp-form', '#totp-code', '/auth/mfa/totp');
onSubmit('#recovery-form', '#recovery-code', '/auth/mfa/recovery-code');
