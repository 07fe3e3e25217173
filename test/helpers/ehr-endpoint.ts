import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll } from 'vitest';
import request from 'supertest';
import { freePort } from './ports.ts';
import { waitFor } from './outbound.ts';
import { startTwoGateways, type Peer, type TwoGateways } from './two-gateways.ts';

/**
 * The sending EHR's notification endpoint, a real HTTP listener on
 * loopback: records every body it takes (parsed JSON) and its content type,
 * answers 503 (Retry-After 0) while `down` says so, and 410 to any URL ending
 * in `?refuse`.
 */
export class EhrEndpoint<N> {
  readonly received: N[] = [];
  readonly contentTypes = new Set<string>();
  refused = 0;
  down: (n: N) => boolean = () => false;
  server!: Server;
  url!: string;

  async start(path = '/ehr/notify'): Promise<void> {
    const port = await freePort();
    this.server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        const n = JSON.parse(body) as N;
        if (req.url?.endsWith('?refuse')) {
          res.writeHead(410).end();
          return;
        }
        if (this.down(n)) {
          this.refused++;
          res.writeHead(503, { 'retry-after': '0' }).end();
          return;
        }
        this.contentTypes.add(req.headers['content-type'] ?? '');
        this.received.push(n);
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => this.server.listen(port, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${port}${path}`;
  }

  close(): Promise<unknown> {
    return new Promise((r) => (this.server ? this.server.close(r) : r(undefined)));
  }
}

/** The message at `p`'s inbox that a delivery brought, once it is there. */
export function inboxMessageOf(p: Peer, delivery: string): Promise<{ id: string; delivery: string }> {
  return waitFor(`inbox message of delivery ${delivery}`, async () => {
    const res = await request(p.gw.app.server)
      .get('/inbox/messages?_count=1000')
      .set('authorization', await p.ehr.bearer());
    return (res.body.messages as Array<{ id: string; delivery: string }>).find((m) => m.delivery === delivery);
  });
}

/** The receiving EHR takes the message a delivery brought: `$ack` at its gateway (a processed receipt follows). */
export async function acknowledgeAt(p: Peer, delivery: string): Promise<void> {
  const m = await inboxMessageOf(p, delivery);
  await request(p.gw.app.server)
    .post(`/inbox/messages/${m.id}/$ack`)
    .set('authorization', await p.ehr.bearer())
    .expect(200);
}

/**
 * Two gateways and the EHR's endpoint for one describe block: started before
 * its tests and closed after them. Read `a` and `b` inside the tests.
 */
export function gatewaysWithEndpoint<N>(endpoint: EhrEndpoint<N>, env: Record<string, string>): TwoGateways {
  let started: TwoGateways | undefined;
  beforeAll(async () => {
    await endpoint.start();
    started = await startTwoGateways(env);
  });
  afterAll(async () => {
    await started?.close();
    await endpoint.close();
  });
  const pair = () => {
    if (!started) throw new Error('the gateways start before the tests');
    return started;
  };
  return {
    get a() {
      return pair().a;
    },
    get b() {
      return pair().b;
    },
    close: () => pair().close(),
  };
}
