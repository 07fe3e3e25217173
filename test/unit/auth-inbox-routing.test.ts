import { describe, expect, it } from 'vitest';
import { checkNewClient, checkReceivesFrom } from '../../src/auth/clients.ts';
import { GatewayError } from '../../src/errors.ts';

describe('inbox routing list (auth_clients.receives_from)', () => {
  it('keeps partner ids, sorted and deduplicated, or * alone', () => {
    expect(checkReceivesFrom(['https://b.example', 'https://a.example', 'https://b.example'])).toEqual([
      'https://a.example',
      'https://b.example',
    ]);
    expect(checkReceivesFrom(['*'])).toEqual(['*']);
    expect(checkReceivesFrom([])).toEqual([]);
  });

  it.each([
    ['not a list', 'https://a.example'],
    ['* with others', ['*', 'https://a.example']],
    ['an empty id', ['']],
    ['a space', ['a b']],
    ['not a string', [42]],
    ['a null', [null]],
  ])('refuses %s with INVALID_VALUE on receives_from', (_name, value) => {
    try {
      checkReceivesFrom(value);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(GatewayError);
      expect((err as GatewayError).code).toBe('INVALID_VALUE');
      expect((err as GatewayError).expression).toEqual(['receives_from']);
    }
  });

  it('a client registered without it receives nothing (fail closed)', () => {
    const c = checkNewClient({ id: 'ehr', jwksUri: 'https://ehr.example/jwks', scopes: ['system/*.read'] });
    expect(c.receivesFrom).toEqual([]);
  });
});
