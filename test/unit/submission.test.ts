import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.ts';
import { checkIdempotencyKey, explicitRecipients, resolveRecipients } from '../../src/outbound/submission.ts';

const partners = [
  { id: 'a.example', endpoint: 'https://a.example/inbox', status: 'active' },
  { id: 'b.example', endpoint: 'https://b.example/inbox', status: 'suspended' },
];
const directory = {
  resolve: async (refs: string[]) => partners.filter((p) => refs.includes(p.id) || refs.includes(p.endpoint)),
  encryptionKey: async (p: { id: string }) => ({ kty: 'EC', crv: 'P-256', x: 'x', y: 'y', kid: `${p.id}-enc` }),
};
const ctx = { directory, config: { protocolV2: 'off' } } as never;

async function refusal(p: Promise<unknown>): Promise<GatewayError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GatewayError);
  return err as GatewayError;
}

describe('the shared submission step', () => {
  it('one record per recipient: a partner named by id and by endpoint is sent once, with its key and a delivery id', async () => {
    const r = await resolveRecipients(ctx, explicitRecipients(['a.example', 'https://a.example/inbox']));
    expect(r).toHaveLength(1);
    expect(r[0]).toMatchObject({ partner: { id: 'a.example' }, key: { kid: 'a.example-enc' } });
    expect(r[0]!.deliveryId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('refuses an unknown or suspended recipient where it was named, and an empty or oversized list', async () => {
    const unknown = await refusal(resolveRecipients(ctx, explicitRecipients(['a.example', 'nobody'])));
    expect([unknown.code, unknown.expression]).toEqual(['UNKNOWN_RECIPIENT', ['recipient[1]']]);
    const suspended = await refusal(resolveRecipients(ctx, explicitRecipients(['b.example'])));
    expect([suspended.code, suspended.expression]).toEqual(['UNKNOWN_RECIPIENT', ['recipient[0]']]);
    expect((await refusal(resolveRecipients(ctx, []))).code).toBe('BAD_REQUEST');
    const many = explicitRecipients(Array.from({ length: 51 }, () => 'a.example'));
    expect((await refusal(resolveRecipients(ctx, many))).code).toBe('BAD_REQUEST');
  });

  it('one Idempotency-Key rule: 1 to 255 printable ASCII characters', () => {
    expect(() => checkIdempotencyKey(undefined)).not.toThrow();
    expect(() => checkIdempotencyKey('k-1')).not.toThrow();
    for (const bad of ['', 'a b', 'x'.repeat(256), 'é']) expect(() => checkIdempotencyKey(bad)).toThrow(GatewayError);
  });
});
