import request from 'supertest';
import { afterAll, describe, expect, it } from 'vitest';
import { r4DefinitionsLoaded } from '../../src/fhir/r4-definitions.ts';
import { messageBundle, startOutbound, type Outbound } from '../helpers/outbound.ts';

/**
 * The R4 definitions load at start, not on the first Bundle: once /ready
 * answers 200 they are loaded, so the first intake pays only its own
 * validation. (This file runs in a process of its own: nothing loaded them before.)
 */
describe('the R4 definitions are warmed at start', () => {
  let o: Outbound | undefined;
  afterAll(async () => o?.close());

  it('are not loaded by importing the gateway, are loaded when /ready answers 200, and the first intake is accepted', async () => {
    expect(r4DefinitionsLoaded()).toBe(false);
    o = await startOutbound({}, 1, { worker: false });
    const ready = await request(o.gw.app.server).get('/ready').expect(200);
    expect(ready.body.checks.validator).toBe('ok');
    expect(r4DefinitionsLoaded()).toBe(true);
    const partner = o.recipients[0]!.id;
    await request(o.gw.app.server)
      .post('/fhir/$process-message')
      .set('authorization', o.ehrAuth)
      .set('content-type', 'application/fhir+json')
      .send(messageBundle([partner]))
      .expect(202);
  });
});
