// The operator console's one script: sign-in and sign-out (the audit page's session), retry and suspend/resume.
import { $, post } from '/ui/page.js';

function say(text) {
  const el = $('#action-result');
  if (el) el.textContent = text;
}

const login = $('#login-form');
if (login) {
  login.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await post('/audit/ui/login', { name: $('#login-name').value, password: $('#login-password').value });
      location.reload();
    } catch (err) {
      $('#login-error').textContent = `Sign-in failed: ${err.message}`;
    }
  });
}

// Sign-out posts where the page says (single sign-on's when an issuer is set); an issuer session is then
// ended at the issuer too, which sends the browser back here. A local session just ends.
const logout = $('#logout');
logout?.addEventListener('click', async () => {
  logout.disabled = true;
  const answer = await post(logout.dataset.signOut, { page: 'console' }).catch(() => ({}));
  if (answer.redirect) location.assign(answer.redirect);
  else location.reload();
});

for (const button of document.querySelectorAll('button.retry')) {
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await post(`/console/deliveries/${encodeURIComponent(button.dataset.id)}/retry`);
      say(`delivery ${button.dataset.id} queued for another attempt`);
      setTimeout(() => location.reload(), 1500);
    } catch (err) {
      button.disabled = false;
      say(`Retry refused: ${err.message}`);
    }
  });
}

for (const button of document.querySelectorAll('button.partner-action')) {
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await post(`/console/partners/${encodeURIComponent(button.dataset.id)}/${button.dataset.action}`);
      location.reload();
    } catch (err) {
      button.disabled = false;
      say(`${button.dataset.action} refused: ${err.message}`);
    }
  });
}
