/**
 * A tiny browser for single sign-on flows: follows redirects (and a page's
 * meta refresh) by hand and keeps each host's cookies. With `html`, it asks
 * for pages as a browser does.
 */
export function fetchBrowser(options: { html?: boolean } = {}) {
  const jars = new Map<string, Map<string, string>>();
  const jar = (url: URL) => jars.get(url.host) ?? jars.set(url.host, new Map()).get(url.host)!;
  const cookieHeader = (url: URL) => [...jar(url)].map(([k, v]) => `${k}=${v}`).join('; ');
  const keep = (url: URL, res: Response) => {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const [k, ...v] = pair!.split('=');
      if (attrs.some((a) => /max-age=0/i.test(a.trim()))) jar(url).delete(k!.trim());
      else jar(url).set(k!.trim(), v.join('='));
    }
  };
  const go = async function (start: string, stopAt?: string): Promise<{ url: URL; res: Response }> {
    let url = new URL(start);
    for (let hop = 0; hop < 15; hop++) {
      const cookies = cookieHeader(url);
      const headers: Record<string, string> = cookies ? { cookie: cookies } : {};
      if (options.html) headers['accept'] = 'text/html,application/xhtml+xml,*/*;q=0.8';
      const res = await fetch(url, { redirect: 'manual', headers });
      keep(url, res);
      const refresh = res.headers.get('content-type')?.startsWith('text/html')
        ? /<meta http-equiv="refresh" content="0;url=([^"]+)">/.exec(await res.clone().text())?.[1]
        : undefined;
      const location = res.headers.get('location') ?? refresh;
      if (!location || (!refresh && (res.status < 300 || res.status >= 400))) return { url, res };
      url = new URL(location, url);
      if (stopAt && url.pathname === stopAt) return { url, res };
    }
    throw new Error('too many redirects');
  };
  /** A cookie this browser holds for a host, as a Cookie header (an empty value when it holds none). */
  const held = (base: string, name: string) => `${name}=${jar(new URL(base)).get(name) ?? ''}`;
  /** Submit a form (POST, form-encoded) with this browser's cookies; then follow where the answer leads. */
  const submit = async (action: string, fields: Record<string, string>): Promise<{ url: URL; res: Response }> => {
    const url = new URL(action);
    const res = await fetch(url, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie: cookieHeader(url), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields),
    });
    keep(url, res);
    const location = res.headers.get('location');
    return location ? go(new URL(location, url).href) : { url, res };
  };
  return Object.assign(go, { held, submit });
}
