// What every browser page's script shares. Every write is a same-origin JSON POST, which the
// gateway's cross-site check requires; a refusal is thrown with the OperationOutcome's diagnostics.
export const $ = (sel) => document.querySelector(sel);

export async function post(url, body) {
  const res = await fetch(url, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body ?? {}),
  });
  if (res.ok) return res.status === 204 ? {} : res.json();
  let text = `HTTP ${res.status}`;
  try {
    const outcome = await res.json();
    text = outcome.issue?.[0]?.diagnostics ?? text;
  } catch {
    // not an OperationOutcome: keep the status
  }
  throw new Error(text);
}
