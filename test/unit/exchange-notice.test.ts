import { describe, expect, it } from 'vitest';
import { responseMessage, type NoticeInput } from '../../src/notify/notice.ts';
import { checkNotifyEndpoint } from '../../src/notify/endpoint.ts';
import { r4Errors } from '../helpers/r4-validator.ts';

const base: NoticeInput = {
  notificationId: '0b7c0f6e-7a53-4d43-9a0e-0a6c0a1f2b3c',
  exchangeId: '5e1d1c2a-4b7f-4c1e-8f0a-1d2c3b4a5f6e',
  kind: 'delivered',
  at: new Date('2026-12-02T05:00:00Z'),
  messageHeaderId: 'order-1',
  detail: {},
  fhirBase: 'https://gw-a.example/fhir',
  org: 'gw-a',
};

type Entry = { fullUrl: string; resource: Record<string, unknown> & { response?: Record<string, unknown> } };
const entries = (n: Record<string, unknown>) => n.entry as Entry[];

describe('exchange notices: id-only R4 response messages', () => {
  it('each state is a valid R4 message naming the original message and the exchange Task', () => {
    for (const kind of ['delivered', 'processed', 'response-received', 'failed', 'expired'] as const) {
      const n = responseMessage({
        ...base,
        kind,
        detail: kind === 'response-received' ? { message: 'm-1', code: 'ok' } : {},
      });
      expect(r4Errors(n)).toEqual([]);
      const h = entries(n)[0]!.resource;
      expect(h.response?.identifier).toBe('order-1');
      expect(h.focus).toEqual([{ reference: `https://gw-a.example/fhir/Task/${base.exchangeId}` }]);
    }
  });

  it('failed and expired are the non-delivery notice: fatal-error with an OperationOutcome saying why', () => {
    const failed = responseMessage({ ...base, kind: 'failed' });
    const expired = responseMessage({ ...base, kind: 'expired' });
    for (const n of [failed, expired]) {
      const [h, outcome] = entries(n);
      expect(h!.resource.response).toMatchObject({ code: 'fatal-error', details: { reference: outcome!.fullUrl } });
      expect(outcome!.resource.resourceType).toBe('OperationOutcome');
    }
    const issue = (n: Record<string, unknown>) => (entries(n)[1]!.resource.issue as Array<{ code: string }>)[0]!.code;
    expect(issue(expired)).toBe('timeout');
    expect(issue(failed)).toBe('transient');
    // Stable bytes: every retry sends the same message.
    expect(JSON.stringify(responseMessage({ ...base, kind: 'failed' }))).toBe(JSON.stringify(failed));
  });

  it("a received response carries the partner's code", () => {
    const n = responseMessage({
      ...base,
      kind: 'response-received',
      detail: { message: 'm-1', code: 'transient-error' },
    });
    expect(entries(n)[0]!.resource.response?.code).toBe('transient-error');
  });

  it('endpoints: https anywhere, http only on loopback, no credentials or fragment', () => {
    expect(checkNotifyEndpoint('https://ehr.example/hook', 'response-url')).toBe('https://ehr.example/hook');
    expect(checkNotifyEndpoint('http://127.0.0.1:8080/hook', 'response-url')).toBe('http://127.0.0.1:8080/hook');
    expect(checkNotifyEndpoint('http://[::1]:8080/h', 'response-url')).toBe('http://[::1]:8080/h');
    for (const bad of [
      'http://10.0.0.1/h',
      'http://ehr.example/h',
      'ftp://127.0.0.1/',
      'https://u:p@ehr.example/',
      'https://ehr.example/#x',
      'x',
    ])
      expect(() => checkNotifyEndpoint(bad, 'response-url')).toThrow(/response-url/);
  });
});
