import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

/** Send a request head, then its body a byte at a time, and read what comes back until the server closes. */
function slowPost(url: string, path: string, length: number, everyMs: number): Promise<{ answer: string; ms: number }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = connect(Number(port), hostname);
    let answer = '';
    let drip: NodeJS.Timeout | undefined;
    socket.on('connect', () => {
      socket.write(
        `POST ${path} HTTP/1.1\r\nhost: ${hostname}\r\ncontent-type: application/jose\r\ncontent-length: ${length}\r\n\r\n`,
      );
      drip = setInterval(() => socket.writable && socket.write('e'), everyMs);
    });
    socket.setEncoding('utf8').on('data', (c: string) => (answer += c));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearInterval(drip);
      resolve({ answer, ms: Date.now() - started });
    });
    setTimeout(() => reject(new Error('the server never cut the slow body')), 20_000).unref();
  });
}

describe('a request body must keep arriving', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ BODY_MIN_RATE: '100', BODY_RATE_WINDOW: '1s' });
  });
  afterAll(async () => gw?.close());

  it('cuts a body that drips in a byte at a time with 408 and an OperationOutcome, within two windows', async () => {
    const { answer, ms } = await slowPost(gw.url, '/inbox', 100_000, 200);
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(answer).toContain('"resourceType":"OperationOutcome"');
    expect(answer).toContain('REQUEST_TIMEOUT');
    expect(ms).toBeLessThan(2_900);
    // The gateway is still there for everyone else.
    expect((await fetch(`${gw.url}/ready`)).status).toBe(200);
  });

  it('leaves a body that arrives at a steady rate alone', async () => {
    const res = await fetch(`${gw.url}/inbox`, {
      method: 'POST',
      headers: { 'content-type': 'application/jose' },
      body: 'not.a.jwe',
    });
    expect(res.status).toBe(400);
  });
});
