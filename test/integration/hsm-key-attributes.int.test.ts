import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { pkcs11js } from '../../hsm/module.ts';
import { findObjects, ulong } from '../../hsm/key-store.ts';
import { ckrName } from '../../hsm/errors.ts';

const bool = (b: unknown) => (b as Buffer)[0] === 1;

describe('gateway private keys stay in the HSM', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
    // One key of each other kind the HSM layer can make, so every template is checked.
    await gw.app.hsm.generateKeyPair({ kty: 'EC', crv: 'P-384' }, 'sign', 'attr-es384');
    await gw.app.hsm.generateKeyPair({ kty: 'RSA', bits: 2048 }, 'sign', 'attr-ps256');
  });
  afterAll(async () => gw?.close());

  it('PKCS#11 reports CKA_SENSITIVE=true, CKA_EXTRACTABLE=false, ALWAYS_SENSITIVE and NEVER_EXTRACTABLE for every private key', async () => {
    const rows = await gw.app.hsm.withSession((session, p11) =>
      findObjects(p11, session, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }]).map((key) => {
        const [label, sensitive, extractable, alwaysSensitive, neverExtractable, isPrivate, token] =
          p11.C_GetAttributeValue(session, key, [
            { type: pkcs11js.CKA_LABEL },
            { type: pkcs11js.CKA_SENSITIVE },
            { type: pkcs11js.CKA_EXTRACTABLE },
            { type: pkcs11js.CKA_ALWAYS_SENSITIVE },
            { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
            { type: pkcs11js.CKA_PRIVATE },
            { type: pkcs11js.CKA_TOKEN },
          ]);
        return {
          label: (label!.value as Buffer).toString(),
          sensitive: bool(sensitive!.value),
          extractable: bool(extractable!.value),
          alwaysSensitive: bool(alwaysSensitive!.value),
          neverExtractable: bool(neverExtractable!.value),
          private: bool(isPrivate!.value),
          token: bool(token!.value),
        };
      }),
    );
    // sig, enc and audit from the gateway's first boot, plus the ES384 and RSA keys above.
    expect(rows.length).toBe(5);
    for (const row of rows) {
      expect(row, row.label).toEqual({
        label: row.label,
        sensitive: true,
        extractable: false,
        alwaysSensitive: true,
        neverExtractable: true,
        private: true,
        token: true,
      });
    }
  });

  it('refuses to reveal a private value or to make a key extractable', async () => {
    const outcome = await gw.app.hsm.withSession((session, p11) => {
      const keys = findObjects(p11, session, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }]);
      const attempt = (fn: () => unknown) => {
        try {
          fn();
          return 'allowed';
        } catch (err) {
          return ckrName(err);
        }
      };
      return keys.map((key) => ({
        // The secret scalar of an EC key is CKA_VALUE; of an RSA key, CKA_PRIVATE_EXPONENT.
        read: attempt(() => {
          const [type] = p11.C_GetAttributeValue(session, key, [{ type: pkcs11js.CKA_KEY_TYPE }]);
          const secret =
            ulong(type!.value as Buffer) === pkcs11js.CKK_EC ? pkcs11js.CKA_VALUE : pkcs11js.CKA_PRIVATE_EXPONENT;
          return p11.C_GetAttributeValue(session, key, [{ type: secret }]);
        }),
        setExtractable: attempt(() =>
          p11.C_SetAttributeValue(session, key, [{ type: pkcs11js.CKA_EXTRACTABLE, value: true }]),
        ),
        setInsensitive: attempt(() =>
          p11.C_SetAttributeValue(session, key, [{ type: pkcs11js.CKA_SENSITIVE, value: false }]),
        ),
      }));
    });
    expect(outcome.length).toBe(5);
    for (const o of outcome) {
      expect(o.read).toBe('CKR_ATTRIBUTE_SENSITIVE');
      expect(o.setExtractable).toBe('CKR_ATTRIBUTE_READ_ONLY');
      expect(o.setInsensitive).toBe('CKR_ATTRIBUTE_READ_ONLY');
    }
  });

  it('pkcs11-tool --list-objects shows every private key as sensitive and never extractable', () => {
    const { library, label, pin } = gw.token;
    const out = execFileSync(
      'pkcs11-tool',
      ['--module', library, '--token-label', label, '--login', '--pin', pin, '--list-objects'],
      {
        encoding: 'utf8',
        env: process.env, // carries SOFTHSM2_CONF of the test token directory
      },
    );
    const blocks = out.split(/\n(?=\S)/).filter((b) => b.startsWith('Private Key Object'));
    expect(blocks.length).toBe(5);
    for (const block of blocks) {
      const access = /Access:\s+(.*)/.exec(block)?.[1] ?? '';
      const flags = access.split(',').map((f) => f.trim());
      expect(flags, block).toEqual(
        expect.arrayContaining(['sensitive', 'always sensitive', 'never extractable', 'local']),
      );
      expect(flags).not.toContain('extractable');
    }
    // Public halves carry no private-key capabilities.
    const publics = out.split(/\n(?=\S)/).filter((b) => b.startsWith('Public Key Object'));
    expect(publics.length).toBe(5);
    for (const block of publics) expect(/Usage:\s+(.*)/.exec(block)?.[1]).toMatch(/^(verify|none)$/);
  });

  it('the blinding key is a token secret that only signs (HMAC): its value cannot be read, exported or derived from', async () => {
    const active = gw.app.keyring.active('blinding');
    const outcome = await gw.app.hsm.withSession((session, p11) => {
      const keys = findObjects(p11, session, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_TOKEN, value: true },
      ]);
      const attempt = (fn: () => unknown) => {
        try {
          fn();
          return 'allowed';
        } catch (err) {
          return ckrName(err);
        }
      };
      return keys.map((key) => {
        const flags = p11.C_GetAttributeValue(session, key, [
          { type: pkcs11js.CKA_ID },
          { type: pkcs11js.CKA_SENSITIVE },
          { type: pkcs11js.CKA_EXTRACTABLE },
          { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
          { type: pkcs11js.CKA_SIGN },
          { type: pkcs11js.CKA_ENCRYPT },
          { type: pkcs11js.CKA_DECRYPT },
          { type: pkcs11js.CKA_WRAP },
          { type: pkcs11js.CKA_DERIVE },
        ]);
        const [id, ...rest] = flags.map((f) => f.value as Buffer);
        return {
          id: id!.toString('hex'),
          flags: rest.map(bool),
          read: attempt(() => p11.C_GetAttributeValue(session, key, [{ type: pkcs11js.CKA_VALUE }])),
          setExtractable: attempt(() =>
            p11.C_SetAttributeValue(session, key, [{ type: pkcs11js.CKA_EXTRACTABLE, value: true }]),
          ),
        };
      });
    });
    // The token's other secret keys (the AES key sealing TOTP secrets) have their own test.
    expect(outcome.filter((k) => k.id === active.hsm_id)).toEqual([
      {
        id: active.hsm_id,
        // sensitive, not extractable, never extractable, sign; no encrypt, decrypt, wrap or derive
        flags: [true, false, true, true, false, false, false, false],
        read: 'CKR_ATTRIBUTE_SENSITIVE',
        setExtractable: 'CKR_ATTRIBUTE_READ_ONLY',
      },
    ]);
    // Keyed: the same identifier text blinds to the same value, and another key would give another.
    const text = Buffer.from('urn:test|1');
    const [x, y] = await gw.app.hsm.hmacSha256(active.hsm_id, [text, text]);
    expect(x!.length).toBe(32);
    expect(x).toEqual(y);
  });
});
