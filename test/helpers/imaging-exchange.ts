import { expect } from 'vitest';
import request from 'supertest';
import type { Peer } from './two-gateways.ts';
import { waitFor } from './outbound.ts';

/** One recipient of an imaging exchange, as GET /imaging/{id} shows it. */
export interface ImagingRecipient {
  partner: string;
  delivery: string;
  state: string;
  manifest_digest: string;
  content_digest: string;
  receipt: string | null;
  attempts: unknown[];
}

/** supertest's parser for a binary body: the bytes as they came. */
export const binaryBody = (res: NodeJS.ReadableStream, cb: (err: Error | null, body: Buffer) => void): void => {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.on('end', () => cb(null, Buffer.concat(chunks)));
};

/** POST a study from one peer's EHR to another peer: 202, and the exchange's location. */
export async function submitImaging(from: Peer, to: Peer, body: Buffer, type = 'application/dicom'): Promise<string> {
  const res = await request(from.gw.app.server)
    .post(`/imaging?recipient=${encodeURIComponent(to.gw.config.org)}`)
    .set('authorization', await from.ehr.bearer())
    .set('content-type', type)
    .send(body);
  expect(res.status, res.text.slice(0, 300)).toBe(202);
  expect(res.headers['content-location']).toMatch(/^\/imaging\/[0-9a-f-]{36}$/);
  return res.headers['content-location'] as string;
}

/** The exchange's (first) recipient once no recipient is pending; it must be delivered. */
export async function imagingDelivered(from: Peer, location: string): Promise<ImagingRecipient> {
  const recipients = await waitFor(
    `${location} settled`,
    async () => {
      const res = await request(from.gw.app.server)
        .get(location)
        .set('authorization', await from.ehr.bearer());
      const all = res.body?.recipients as ImagingRecipient[] | undefined;
      return res.status === 200 && all?.length && all.every((r) => r.state !== 'pending') ? all : undefined;
    },
    60_000,
    100,
  );
  const r = recipients[0]!;
  expect(r.state, JSON.stringify(r.attempts)).toBe('delivered');
  return r;
}

/** The receiving EHR's view of one delivery: its inbox message, and the content with its media type. */
export async function pullImaging(
  to: Peer,
  delivery: string,
): Promise<{ id: string; type: string; body: Buffer; meta: { id: string } }> {
  const auth = await to.ehr.bearer();
  const list = await request(to.gw.app.server).get('/inbox/messages?_count=1000').set('authorization', auth);
  expect(list.status).toBe(200);
  const meta = list.body.messages.find((m: { delivery: string }) => m.delivery === delivery);
  expect(meta, `message of ${delivery}`).toBeDefined();
  const res = await request(to.gw.app.server)
    .get(`/inbox/messages/${meta.id}/content`)
    .set('authorization', auth)
    .buffer(true)
    .parse(binaryBody as never);
  expect(res.status).toBe(200);
  return { id: meta.id, type: res.headers['content-type'] as string, body: res.body as Buffer, meta };
}
