import { describe, expect, it } from 'vitest';
import { toHsmError } from '../../hsm/errors.ts';
import { toErrorReply } from '../../plugins/error-reply.ts';

describe('a mechanism the PKCS#11 module does not offer', () => {
  const refused = toHsmError(new Error('CKR_MECHANISM_INVALID:112'), 'key agreement');

  it('is its own HSM error, for the operator, not a transient outage', () => {
    expect(refused).toMatchObject({
      code: 'HSM_MECHANISM_UNSUPPORTED',
      ckr: 'CKR_MECHANISM_INVALID',
      transient: false,
    });
    expect(refused.message).toContain('does not offer the mechanism');
  });

  it('answers 503 with Retry-After (the sender keeps its request), logged as a server fault', () => {
    const reply = toErrorReply(refused, 'req-1');
    expect(reply.status).toBe(503);
    expect(reply.retryAfter).toBe(60);
    expect(reply.serverFault).toBe(true);
    expect(reply.outcome.issue[0]).toMatchObject({ code: 'transient', details: { coding: [{ code: 'UNAVAILABLE' }] } });
  });

  it('leaves other failed operations as they were (500, internal)', () => {
    const other = toErrorReply(toHsmError(new Error('CKR_KEY_TYPE_INCONSISTENT:99'), 'signing'), 'req-2');
    expect(other.status).toBe(500);
  });
});
