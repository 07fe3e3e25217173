import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { testClient, type TestClient } from '../helpers/auth.ts';
import { SCOPE_BUNDLE_WRITE } from '../../src/auth/scopes.ts';

const MiB = 1024 * 1024;

/**
 * A client that writes its whole body and does not read for a second (a busy
 * sender): if the gateway closed the connection with the body unread, the
 * reset reaches the client first (EPIPE) and the answer is lost.
 */
function slowReader(url: string, head: string, length: number): Promise<string> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect(Number(port), '127.0.0.1', () => {
      s.write(`${head}Host: 127.0.0.1\r\nContent-Length: ${length}\r\n\r\n`);
      s.write(Buffer.alloc(length, 'a'));
      s.pause();
      setTimeout(() => {
        let got = '';
        s.on('data', (d: Buffer) => {
          got += d.toString('latin1');
          const end = got.indexOf('\r\n\r\n');
          const declared = /\r\ncontent-length: (\d+)/i.exec(got);
          if (end >= 0 && declared && got.length >= end + 4 + Number(declared[1])) {
            s.destroy();
            resolve(got);
          }
        });
        s.resume();
      }, 1000);
    });
    s.on('error', (err: NodeJS.ErrnoException) => reject(new Error(`the client lost the answer: ${err.code}`)));
  });
}

describe('an answer sent before the body was read reaches a client that is still writing', () => {
  let gw: TestGateway;
  let ehr: TestClient;
  beforeAll(async () => {
    gw = await startTestGateway({ INBOX_BUFFER_BUDGET: String(MiB) });
    ehr = await testClient(gw, { scopes: [SCOPE_BUNDLE_WRITE] });
  });
  afterAll(async () => gw?.close());

  it('POST /inbox over the budget: 503, read by the client after it wrote 30 MiB', async () => {
    const answer = await slowReader(gw.url, 'POST /inbox HTTP/1.1\r\nContent-Type: application/jose\r\n', 30 * MiB);
    expect(answer).toMatch(/^HTTP\/1\.1 503 /);
    expect(answer).toMatch(/\r\nretry-after: 5\r\n/i);
    expect(answer).toContain('"UNAVAILABLE"');
  });

  it('POST /imaging refused before its body is read (unknown recipient): 422, read by the client after it wrote 16 MiB', async () => {
    const answer = await slowReader(
      gw.url,
      `POST /imaging?recipient=${encodeURIComponent('https://nobody.test')} HTTP/1.1\r\nContent-Type: application/dicom\r\nAuthorization: ${await ehr.bearer()}\r\n`,
      16 * MiB,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 422 /);
    expect(answer).toContain('"UNKNOWN_RECIPIENT"');
  });
});
