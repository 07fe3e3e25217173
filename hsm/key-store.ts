import { pkcs11js, type Pkcs11 } from './module.ts';
import { HsmError } from './errors.ts';

export type Curve = 'P-256' | 'P-384';
export type KeySpec = { kty: 'EC'; crv: Curve } | { kty: 'RSA'; bits: 2048 | 3072 | 4096 };
export type KeyUsage = 'sign' | 'derive';

export interface PublicJwk {
  kty: 'EC' | 'RSA';
  crv?: Curve;
  x?: string;
  y?: string;
  n?: string;
  e?: string;
}

/** What the token says about a private key: enough to audit it without touching secret material. */
export interface HsmKeyInfo {
  id: string; // CKA_ID, hex
  label: string;
  usage: KeyUsage;
  sensitive: boolean;
  extractable: boolean;
  alwaysSensitive: boolean;
  neverExtractable: boolean;
  publicJwk: PublicJwk;
}

const CURVE_OID: Record<Curve, Buffer> = {
  'P-256': Buffer.from('06082a8648ce3d030107', 'hex'),
  'P-384': Buffer.from('06052b81040022', 'hex'),
};
const COORD_BYTES: Record<Curve, number> = { 'P-256': 32, 'P-384': 48 };

export function curveFromParams(params: Buffer): Curve {
  for (const [crv, oid] of Object.entries(CURVE_OID)) if (oid.equals(params)) return crv as Curve;
  throw new HsmError('HSM_OPERATION_FAILED', `unsupported EC curve parameters ${params.toString('hex')}`);
}

/** CKA_EC_POINT is a DER OCTET STRING around 04||x||y; some tokens omit the wrapper. */
export function unwrapEcPoint(value: Buffer, crv: Curve): Buffer {
  const n = 1 + 2 * COORD_BYTES[crv];
  if (value.length === n && value[0] === 0x04) return value;
  if (value[0] === 0x04 && value.length === n + 2 && value[1] === n) return value.subarray(2);
  if (value[0] === 0x04 && value.length === n + 3 && value[1] === 0x81 && value[2] === n) return value.subarray(3);
  throw new HsmError('HSM_OPERATION_FAILED', 'unrecognised CKA_EC_POINT encoding');
}

export function ecPointToJwk(point: Buffer, crv: Curve): PublicJwk {
  const size = COORD_BYTES[crv];
  return {
    kty: 'EC',
    crv,
    x: point.subarray(1, 1 + size).toString('base64url'),
    y: point.subarray(1 + size).toString('base64url'),
  };
}

/** Generates in the libuv pool: RSA key generation can take seconds and must not block the event loop. */
export async function generateKeyPair(
  p11: Pkcs11,
  session: Buffer,
  spec: KeySpec,
  usage: KeyUsage,
  label: string,
  id: Buffer,
): Promise<void> {
  const common: pkcs11js.Template = [
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_ID, value: id },
  ];
  const privateTemplate: pkcs11js.Template = [
    ...common,
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    // Without CKA_SENSITIVE=true SoftHSM leaves it false; both are needed.
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_SIGN, value: usage === 'sign' },
    { type: pkcs11js.CKA_DERIVE, value: usage === 'derive' },
    { type: pkcs11js.CKA_DECRYPT, value: false },
    { type: pkcs11js.CKA_UNWRAP, value: false },
  ];
  const publicTemplate: pkcs11js.Template = [
    ...common,
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
    { type: pkcs11js.CKA_PRIVATE, value: false },
    { type: pkcs11js.CKA_VERIFY, value: usage === 'sign' },
    { type: pkcs11js.CKA_DERIVE, value: false },
    // Least privilege: SoftHSM would otherwise let the public half encrypt and wrap.
    { type: pkcs11js.CKA_ENCRYPT, value: false },
    { type: pkcs11js.CKA_WRAP, value: false },
  ];
  if (spec.kty === 'EC') {
    publicTemplate.push(
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC },
      { type: pkcs11js.CKA_EC_PARAMS, value: CURVE_OID[spec.crv] },
    );
    privateTemplate.push({ type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC });
    await p11.C_GenerateKeyPairAsync(
      session,
      { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
      publicTemplate,
      privateTemplate,
    );
  } else {
    if (usage !== 'sign') throw new HsmError('HSM_OPERATION_FAILED', 'RSA keys are for signing only');
    publicTemplate.push(
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA },
      { type: pkcs11js.CKA_MODULUS_BITS, value: spec.bits },
      { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
    );
    privateTemplate.push({ type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA });
    await p11.C_GenerateKeyPairAsync(
      session,
      { mechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN },
      publicTemplate,
      privateTemplate,
    );
  }
}

export function findObjects(p11: Pkcs11, session: Buffer, template: pkcs11js.Template): Buffer[] {
  p11.C_FindObjectsInit(session, template);
  try {
    const found: Buffer[] = [];
    for (;;) {
      const batch = p11.C_FindObjects(session, 64);
      if (batch.length === 0) return found;
      found.push(...batch);
    }
  } finally {
    p11.C_FindObjectsFinal(session);
  }
}

export function findKeyObject(p11: Pkcs11, session: Buffer, id: Buffer, cls: number): Buffer | undefined {
  return findObjects(p11, session, [
    { type: pkcs11js.CKA_CLASS, value: cls },
    { type: pkcs11js.CKA_ID, value: id },
  ])[0];
}

/**
 * The values of `types`, in the order asked. C_GetAttributeValue answers one
 * value per attribute requested; a shorter answer is a broken token, so it throws.
 */
export function readAttributes<const T extends readonly number[]>(
  p11: Pkcs11,
  session: Buffer,
  object: Buffer,
  types: T,
): { [K in keyof T]: Buffer } {
  const result = p11.C_GetAttributeValue(
    session,
    object,
    types.map((type) => ({ type })),
  );
  if (result.length !== types.length) {
    throw new HsmError('HSM_OPERATION_FAILED', `token answered ${result.length} of ${types.length} attributes`);
  }
  return result.map((attribute) => attribute.value) as { [K in keyof T]: Buffer };
}

export function readPublicJwk(p11: Pkcs11, session: Buffer, publicKey: Buffer): PublicJwk {
  const [type] = readAttributes(p11, session, publicKey, [pkcs11js.CKA_KEY_TYPE]);
  const keyType = ulong(type);
  if (keyType === pkcs11js.CKK_EC) {
    const [params, point] = readAttributes(p11, session, publicKey, [pkcs11js.CKA_EC_PARAMS, pkcs11js.CKA_EC_POINT]);
    const crv = curveFromParams(params);
    return ecPointToJwk(unwrapEcPoint(point, crv), crv);
  }
  const [n, e] = readAttributes(p11, session, publicKey, [pkcs11js.CKA_MODULUS, pkcs11js.CKA_PUBLIC_EXPONENT]);
  return { kty: 'RSA', n: n.toString('base64url'), e: e.toString('base64url') };
}

/** CK_ULONG attributes come back as native-endian bytes of the platform's long. */
export const ulong = (b: Buffer): number => (b.length === 8 ? Number(b.readBigUInt64LE()) : b.readUInt32LE());

const bool = (v: unknown) => (Buffer.isBuffer(v) ? v[0] === 1 : Boolean(v));

export function describeKey(p11: Pkcs11, session: Buffer, privateKey: Buffer): HsmKeyInfo {
  const [id, label, sign, sensitive, extractable, alwaysSensitive, neverExtractable] = readAttributes(
    p11,
    session,
    privateKey,
    [
      pkcs11js.CKA_ID,
      pkcs11js.CKA_LABEL,
      pkcs11js.CKA_SIGN,
      pkcs11js.CKA_SENSITIVE,
      pkcs11js.CKA_EXTRACTABLE,
      pkcs11js.CKA_ALWAYS_SENSITIVE,
      pkcs11js.CKA_NEVER_EXTRACTABLE,
    ],
  );
  const publicKey = findKeyObject(p11, session, id, pkcs11js.CKO_PUBLIC_KEY);
  if (!publicKey) throw new HsmError('HSM_KEY_NOT_FOUND', `public half of key ${id.toString('hex')} not found`);
  return {
    id: id.toString('hex'),
    label: label.toString('utf8'),
    usage: bool(sign) ? 'sign' : 'derive',
    sensitive: bool(sensitive),
    extractable: bool(extractable),
    alwaysSensitive: bool(alwaysSensitive),
    neverExtractable: bool(neverExtractable),
    publicJwk: readPublicJwk(p11, session, publicKey),
  };
}
