import { describe, expect, it } from 'vitest';
import { announceReady, startBanner } from '../../src/cli/start-banner.ts';

const gateway = { baseUrl: 'http://127.0.0.1:8080', org: 'hospital-a' };

function capture(isTTY: boolean) {
  const written: string[] = [];
  const logged: Array<{ fields: Record<string, unknown>; message: string }> = [];
  announceReady(
    gateway,
    { worker: true },
    {
      isTTY,
      write: (t) => written.push(t),
      log: (fields, message) => logged.push({ fields, message }),
    },
  );
  return { written, logged };
}

describe('gateway start: where to go once it is ready', () => {
  it('names the API, FHIR base, docs and audit page', () => {
    const banner = startBanner(gateway.baseUrl, gateway.org);
    for (const url of ['http://127.0.0.1:8080', '/fhir', '/docs', '/audit/ui'])
      expect(banner).toContain(url.startsWith('/') ? gateway.baseUrl + url : url);
    expect(banner).toContain('hospital-a');
  });

  it('prints the banner on a terminal, and logs one line with the URLs either way', () => {
    const tty = capture(true);
    expect(tty.written).toEqual([startBanner(gateway.baseUrl, gateway.org) + '\n']);
    const piped = capture(false);
    expect(piped.written).toEqual([]);
    for (const { logged } of [tty, piped]) {
      expect(logged).toEqual([
        {
          message: 'gateway ready',
          fields: {
            url: 'http://127.0.0.1:8080',
            org: 'hospital-a',
            worker: true,
            fhir: 'http://127.0.0.1:8080/fhir',
            docs: 'http://127.0.0.1:8080/docs',
            audit: 'http://127.0.0.1:8080/audit/ui',
          },
        },
      ]);
    }
  });
});
