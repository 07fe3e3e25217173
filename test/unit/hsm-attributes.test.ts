import { describe, expect, it } from 'vitest';
import { readAttributes } from '../../hsm/key-store.ts';
import { pkcs11js, type Pkcs11 } from '../../hsm/module.ts';
import { HsmError } from '../../hsm/errors.ts';

// A token that answers C_GetAttributeValue with the given values (a real SoftHSM always answers in full).
const tokenAnswering = (...values: Buffer[]) =>
  ({ C_GetAttributeValue: () => values.map((value, i) => ({ type: i, value })) }) as unknown as Pkcs11;

describe('readAttributes', () => {
  it('returns one value per attribute asked, in order', () => {
    const [id, label] = readAttributes(
      tokenAnswering(Buffer.from('01', 'hex'), Buffer.from('k')),
      Buffer.alloc(0),
      Buffer.alloc(0),
      [pkcs11js.CKA_ID, pkcs11js.CKA_LABEL],
    );
    expect(id.toString('hex')).toBe('01');
    expect(label.toString()).toBe('k');
  });

  it('refuses a short answer from the token as HSM_OPERATION_FAILED instead of reading undefined', () => {
    const read = () =>
      readAttributes(tokenAnswering(Buffer.from('01', 'hex')), Buffer.alloc(0), Buffer.alloc(0), [
        pkcs11js.CKA_ID,
        pkcs11js.CKA_LABEL,
      ]);
    expect(read).toThrow(HsmError);
    expect(read).toThrow('token answered 1 of 2 attributes');
  });
});
