import {
  createCipheriv,
  createHash,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  randomBytes,
  randomUUID,
  sign,
  type KeyObject,
} from 'node:crypto';
import { CompactSign, exportJWK, importJWK, type JWK } from 'jose';

/**
 * A test partner with software keys, and a software sealer that can build
 * any envelope, well-formed or not, independently of the gateway's code.
 */
export interface SoftPartner {
  id: string;
  sigKid: string;
  sigPrivate: KeyObject;
  /** Public JWKS to register in the gateway's directory. */
  jwks: { keys: JWK[] };
}

export async function softPartner(id: string): Promise<SoftPartner> {
  const sig = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const enc = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const sigKid = `sig-${randomBytes(4).toString('hex')}`;
  return {
    id,
    sigKid,
    sigPrivate: sig.privateKey,
    jwks: {
      keys: [
        { ...(await exportJWK(sig.publicKey)), kid: sigKid, use: 'sig', alg: 'ES256' },
        {
          ...(await exportJWK(enc.publicKey)),
          kid: `enc-${randomBytes(4).toString('hex')}`,
          use: 'enc',
          alg: 'ECDH-ES',
        },
      ],
    },
  };
}

export interface ContentClaims {
  iss: string;
  aud: string;
  iat: number;
  jti: string;
  exchange: string;
  content_type: string;
  content: unknown;
}

export function claimsFor(
  partner: { id: string },
  aud: string,
  content: unknown,
  extra: Partial<ContentClaims> = {},
): ContentClaims {
  return {
    iss: partner.id,
    aud,
    iat: Math.floor(Date.now() / 1000),
    jti: randomUUID(),
    exchange: randomUUID(),
    content_type: 'application/fhir+json',
    content,
    ...extra,
  };
}

/** The inner JWS (typ exchange+jwt), signed in software by the partner (or another key under its kid). */
export async function signContent(
  partner: SoftPartner,
  claims: object,
  options: { key?: KeyObject; typ?: string; payloadText?: string; headerText?: string } = {},
): Promise<string> {
  if (options.headerText !== undefined) {
    // A header no JSON serialiser writes (a repeated member): signed by hand over its exact text.
    const input = `${Buffer.from(options.headerText).toString('base64url')}.${Buffer.from(
      options.payloadText ?? JSON.stringify(claims),
    ).toString('base64url')}`;
    const sig = sign('sha256', Buffer.from(input), {
      key: options.key ?? partner.sigPrivate,
      dsaEncoding: 'ieee-p1363',
    });
    return `${input}.${sig.toString('base64url')}`;
  }
  return new CompactSign(Buffer.from(options.payloadText ?? JSON.stringify(claims)))
    .setProtectedHeader({ alg: 'ES256', kid: partner.sigKid, typ: options.typ ?? 'exchange+jwt' })
    .sign(options.key ?? partner.sigPrivate);
}

/**
 * A compact JWE with ECDH-ES + A256GCM built with node:crypto only. `header`
 * adds or overrides protected-header members (zip, alg, a bad epk...): the
 * encryption itself stays correct, so only the receiver's policy can refuse.
 */
export function seal(
  recipient: JWK & { kid?: string },
  plaintext: string | Buffer,
  header: Record<string, unknown> = {},
  /** Rewrites the protected header's JSON text (e.g. to repeat a member, which no JSON serialiser writes). */
  headerText: (json: string) => string = (json) => json,
): string {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const epk = publicKey.export({ format: 'jwk' });
  const h = {
    alg: 'ECDH-ES',
    enc: 'A256GCM',
    kid: recipient.kid,
    epk: { kty: 'EC', crv: 'P-256', x: epk.x, y: epk.y },
    cty: 'JWT',
    ...header,
  };
  const z = diffieHellman({
    privateKey,
    publicKey: createPublicKey({
      key: { kty: 'EC', crv: recipient.crv, x: recipient.x, y: recipient.y } as never,
      format: 'jwk',
    }),
  });
  const info = Buffer.concat([u32(7), Buffer.from('A256GCM'), u32(0), u32(0), u32(256)]);
  const cek = createHash('sha256').update(u32(1)).update(z).update(info).digest();
  const protectedB64 = Buffer.from(headerText(JSON.stringify(h))).toString('base64url');
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', cek, iv).setAAD(Buffer.from(protectedB64, 'ascii'));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return [
    protectedB64,
    '',
    iv.toString('base64url'),
    ct.toString('base64url'),
    cipher.getAuthTag().toString('base64url'),
  ].join('.');
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** The gateway's published encryption key (from its JWKS). */
export async function publishedEncKey(baseUrl: string): Promise<JWK & { kid: string }> {
  const jwks = (await (await fetch(`${baseUrl}/.well-known/jwks.json`)).json()) as {
    keys: Array<JWK & { kid: string }>;
  };
  return jwks.keys.find((k) => k.use === 'enc')!;
}

export async function publishedSigKey(baseUrl: string, kid: string) {
  const jwks = (await (await fetch(`${baseUrl}/.well-known/jwks.json`)).json()) as {
    keys: Array<JWK & { kid: string }>;
  };
  return importJWK(
    jwks.keys.find((k) => k.kid === kid)!,
    'ES256',
  );
}
