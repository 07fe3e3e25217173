import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { settled, startOutbound, type Outbound } from '../helpers/outbound.ts';

const DIR = join(import.meta.dirname, '..', 'fixtures', 'synthea');
const FILES = readdirSync(DIR)
  .filter((f) => f.endsWith('.json'))
  .sort();

describe('outbound: every Synthea bundle round-trips byte for byte', () => {
  let o: Outbound;
  beforeAll(async () => {
    o = await startOutbound({}, 1);
  });
  afterAll(async () => o?.close());

  it('has the corpus', () => {
    expect(FILES.length).toBeGreaterThanOrEqual(18);
  });

  it('delivers each bundle so that the recipient holds exactly the accepted bytes', async () => {
    const r = o.recipients[0]!;
    const sent: Array<{ file: string; location: string }> = [];
    for (const file of FILES) {
      const bytes = readFileSync(join(DIR, file));
      const res = await request(o.gw.app.server)
        .post(`/exchanges?recipient=${encodeURIComponent(r.id)}`)
        .set('authorization', o.ehrAuth)
        .set('content-type', 'application/fhir+json')
        .send(bytes.toString('utf8'));
      expect(res.status, `${file}: ${JSON.stringify(res.body)}`).toBe(202);
      sent.push({ file, location: res.headers['content-location'] as string });
    }
    for (const { file, location } of sent) {
      const view = await settled(o, location, undefined, 60_000);
      const d = view.recipients[0];
      expect(d.state, file).toBe('delivered');
      const got = r.received.get(d.delivery)!;
      expect(Buffer.from(got.content, 'utf8').equals(readFileSync(join(DIR, file))), file).toBe(true);
    }
  }, 180_000);
});
