import { generateKeyPairSync, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compactVerify, importJWK } from 'jose';
import { describe, expect, it } from 'vitest';
import type { Partner, PartnerJwk } from '../../src/directory/directory.ts';
import { GatewayError } from '../../src/errors.ts';
import type { Signer } from '../../src/jose/signer.ts';
import { nextAttempt } from '../../src/net/retry-policy.ts';
import {
  signProcessedReceipt,
  verifyProcessedReceipt,
  type ProcessedReceiptChecks,
} from '../../src/protocol/processed-receipt.ts';
import { claimsPayload, PROTOCOL } from '../../src/protocol/wire.ts';

const ex = JSON.parse(
  readFileSync(join(import.meta.dirname, '..', 'fixtures', 'protocol-v1-answers-example.json'), 'utf8'),
);

describe('response and processed receipt worked examples (docs/PROTOCOL.md §3.1, §12)', () => {
  it('the processed receipt verifies with the example key, under its own typ, with exactly the claims shown', async () => {
    const { payload, protectedHeader } = await compactVerify(ex.processed, await importJWK(ex.recipSig, 'ES256'));
    expect(protectedHeader).toEqual({ typ: 'exchange-processed+jwt', alg: 'ES256', kid: ex.recipSig.kid });
    expect(JSON.parse(new TextDecoder().decode(payload))).toEqual(ex.processedClaims);
  });

  it('the response payload is what the sender writes: response members after exchange, the content verbatim and last', () => {
    const c = JSON.parse(ex.responsePayload);
    expect(
      claimsPayload(
        {
          iss: c.iss,
          aud: c.aud,
          iat: c.iat,
          jti: c.jti,
          exchange: c.exchange,
          response_to: c.response_to,
          response_exchange: c.response_exchange,
          content_type: c.content_type,
        },
        ex.responseBundle,
      ),
    ).toBe(ex.responsePayload);
    expect(Object.keys(c)).toEqual([
      'iss',
      'aud',
      'iat',
      'jti',
      'exchange',
      'response_to',
      'response_exchange',
      'content_type',
      'content',
    ]);
    // Without the response members, the payload is the §3 one: a message that answers nothing names nothing.
    expect(
      JSON.parse(claimsPayload({ iss: 'a', aud: 'b', iat: 1, jti: 'j', exchange: 'e', content_type: 'x' }, '{}')),
    ).not.toHaveProperty('response_to');
  });

  it('appears verbatim in docs/PROTOCOL.md', () => {
    const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'PROTOCOL.md'), 'utf8');
    for (const v of [ex.processed, ex.responsePayload, ex.recipSig.x, ex.recipSig.y]) expect(doc).toContain(v);
  });
});

const ORG = 'https://gw.hospital-a.example';
const PARTNER = 'https://gw.hospital-b.example';
const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...key.publicKey.export({ format: 'jwk' }), kid: 'sig-b', use: 'sig', alg: 'ES256' } as PartnerJwk;
const signer: Signer = {
  alg: 'ES256',
  kid: 'sig-b',
  sign: async (data) => sign('sha256', data, { key: key.privateKey, dsaEncoding: 'ieee-p1363' }),
  signDigest: async () => {
    throw new Error('not used');
  },
};
/** The partner directory in memory: the receipt's own reading is what is checked here. */
const checks: ProcessedReceiptChecks = {
  directory: {
    sender: async (id: string) => (id === PARTNER ? ({ id, status: 'active' } as Partner) : undefined),
    verificationKey: async (_id: string, kid: string) => {
      if (kid !== jwk.kid) throw new GatewayError('FORBIDDEN', 'no such key');
      return jwk;
    },
  },
  org: ORG,
  clockSkewMs: 300_000,
  maxAgeMs: 48 * 3600_000,
};
const now = Math.floor(Date.now() / 1000);
const claims = {
  iss: PARTNER,
  aud: ORG,
  iat: now,
  jti: '01967d2d-1a2b-7c3d-8e4f-5a6b7c8d9e0f',
  exchange: '3d8e5c1a-7b2f-4e3a-a1d4-5c6b7a8f9e00',
  delivery: '6f1c2a0e-8a55-4f0e-9d59-2f5b1b7c9e01',
  digest: 'sha-256=P6fNGbz2WbFGT0XEryGA-9POvDnnaCFoQRFuHAxurqo',
  receipt: 'b7e1f0c2-3d4a-4b5c-8d6e-7f8091a2b3c4',
  processed_at: now - 5,
  via: 'forwarded' as const,
};

/** A JWS under the processed typ over any claims, by the partner's real key. */
function signedClaims(c: Record<string, unknown>, typ: string = PROTOCOL.processedTyp): string {
  const b = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${b({ alg: 'ES256', kid: 'sig-b', typ })}.${b(c)}`;
  return `${input}.${sign('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

async function refusal(jws: string): Promise<{ code: string; expression?: string[] }> {
  try {
    await verifyProcessedReceipt(jws, checks);
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    return { code: (err as GatewayError).code, expression: (err as GatewayError).expression };
  }
  throw new Error('verified');
}

describe('processed receipt: signed by the recipient, every claim checked by the sender', () => {
  it('what the recipient signs, the sender verifies, status processed', async () => {
    const jws = await signProcessedReceipt(signer, claims);
    expect(await verifyProcessedReceipt(jws, checks)).toEqual({ ...claims, status: 'processed' });
  });

  it('refuses each wrong or missing claim with a 4xx code naming it', async () => {
    const good = { ...claims, status: 'processed' };
    const cases: Array<[Record<string, unknown>, string, string?]> = [
      [{ ...good, status: 'accepted' }, 'RECEIPT_INVALID', 'receipt.status'],
      [{ ...good, via: 'read' }, 'RECEIPT_INVALID', 'receipt.via'],
      [{ ...good, delivery: undefined }, 'RECEIPT_INVALID', 'receipt.delivery'],
      [{ ...good, receipt: 7 }, 'RECEIPT_INVALID', 'receipt.receipt'],
      [{ ...good, processed_at: '2026-01-01' }, 'RECEIPT_INVALID', 'receipt.processed_at'],
      [{ ...good, aud: 'https://someone-else.example' }, 'WRONG_AUDIENCE', 'aud'],
      [{ ...good, iat: now + 3600 }, 'IAT_OUT_OF_WINDOW', 'iat'],
      [{ ...good, exchange: undefined }, 'CLAIMS_INVALID', 'exchange'],
      [{ ...good, iss: 'https://stranger.example' }, 'UNKNOWN_SENDER', 'iss'],
    ];
    for (const [c, code, expression] of cases) {
      const got = await refusal(signedClaims(c));
      expect(got.code, JSON.stringify(c)).toBe(code);
      if (expression) expect(got.expression, code).toEqual([expression]);
    }
  });

  it('a transport receipt is no processed receipt, nor the other way round: the typs differ', async () => {
    expect((await refusal(signedClaims({ ...claims, status: 'processed' }, PROTOCOL.receiptTyp))).code).toBe(
      'JWS_MALFORMED',
    );
  });
});

describe('the delivery retry rule, shared by deliveries and processed receipts', () => {
  const bounds = {
    deliveryRetryBase: 1_000,
    deliveryRetryMax: 60_000,
    deliveryMaxAttempts: 3,
    deliveryHorizon: 600_000,
  };
  const start = new Date(1_000_000);

  it('schedules the next attempt with backoff inside the horizon', () => {
    const next = nextAttempt(1, start, bounds, undefined, 1_000_000);
    expect('at' in next && next.at.getTime()).toBeGreaterThanOrEqual(1_000_500);
    expect('at' in next && next.at.getTime()).toBeLessThanOrEqual(1_001_000);
  });

  it('says why a round is over: its attempts spent, or the next one past the horizon', () => {
    expect(nextAttempt(3, start, bounds, undefined, 1_000_000)).toEqual({ exhausted: 'attempts' });
    expect(nextAttempt(1, start, bounds, 3_600_000, 1_000_000)).toEqual({ exhausted: 'horizon' });
  });
});
