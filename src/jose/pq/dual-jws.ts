import { sign as nodeSign, type KeyObject } from 'node:crypto';
import { errors, flattenedVerify } from 'jose';
import { GatewayError } from '../../errors.ts';
import { b64u, fromB64u } from '../base64url.ts';
import { duplicateMember } from '../duplicate-members.ts';
import type { JwsHeaderExtras } from '../jws.ts';
import type { Signer } from '../signer.ts';
import type { KeyResolver, VerifiedJws } from '../verify.ts';

/**
 * Protocol v2 signatures: one payload signed twice, ES256 (HSM) and ML-DSA-65
 * (RFC 9964), as a JWS in the general JSON serialization (RFC 7515 §7.2.1).
 * Every JWS library that reads that form checks each signature on its own,
 * with no knowledge of this protocol; a nested JWS would hide the inner
 * signature from them. A v2 receiver requires both to verify.
 */
export const PQ_SIGNATURE_ALG = 'ML-DSA-65';
const CLASSICAL_ALGS = ['ES256'];

/** Signs with an ML-DSA-65 private key held in memory (unwrapped from the HSM). */
export interface PqSigner {
  readonly kid: string;
  readonly privateKey: KeyObject;
}

export async function signDual(
  signer: Signer,
  pq: PqSigner,
  payload: Uint8Array | string,
  header: JwsHeaderExtras = {},
): Promise<string> {
  const payloadB64 = b64u(payload);
  const classical = b64u(JSON.stringify({ ...header, alg: signer.alg, kid: signer.kid }));
  const quantum = b64u(JSON.stringify({ ...header, alg: PQ_SIGNATURE_ALG, kid: pq.kid }));
  // ML-DSA signs the message itself (pure mode, empty context), as RFC 9964 requires; on the libuv
  // pool beside the HSM's signature, so the event loop keeps serving requests meanwhile.
  const [classicalSig, quantumSig] = await Promise.all([
    signer.sign(Buffer.from(`${classical}.${payloadB64}`, 'ascii')),
    signOffThread(Buffer.from(`${quantum}.${payloadB64}`, 'ascii'), pq.privateKey),
  ]);
  return JSON.stringify({
    payload: payloadB64,
    signatures: [
      { protected: classical, signature: b64u(classicalSig) },
      { protected: quantum, signature: b64u(quantumSig) },
    ],
  });
}

const signOffThread = (data: Buffer, key: KeyObject): Promise<Buffer> =>
  new Promise((resolve, reject) => nodeSign(null, data, key, (err, sig) => (err ? reject(err) : resolve(sig))));

/** Whether a JWS text is in the JSON serialization (v2) rather than compact (v1). */
export const isJsonJws = (text: string): boolean => text.trimStart().startsWith('{');

const malformed = (message: string) => new GatewayError('JWS_MALFORMED', message);

interface SignatureEntry {
  protected: string;
  signature: string;
  header: Record<string, unknown>;
}

function parseGeneral(text: string): { payload: string; entries: SignatureEntry[] } {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw malformed('not a JWS: the JSON serialization does not parse');
  }
  if (duplicateMember(text) !== undefined) throw malformed('the JWS repeats a member');
  const { payload, signatures, ...rest } = (doc ?? {}) as Record<string, unknown>;
  if (typeof payload !== 'string' || !Array.isArray(signatures) || Object.keys(rest).length > 0)
    throw malformed('not a JWS in the general JSON serialization');
  if (signatures.length !== 2) throw malformed('a v2 JWS carries exactly two signatures');
  const entries = signatures.map((s: unknown) => {
    const { protected: p, signature, ...others } = (s ?? {}) as Record<string, unknown>;
    if (typeof p !== 'string' || typeof signature !== 'string' || Object.keys(others).length > 0)
      throw malformed('each signature has a protected header and a signature, nothing else');
    const headerText = fromB64u(p).toString('utf8');
    if (duplicateMember(headerText) !== undefined) throw malformed('a JWS header repeats a member');
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(headerText) as Record<string, unknown>;
    } catch {
      throw malformed('a JWS protected header is not JSON');
    }
    return { protected: p, signature, header };
  });
  return { payload, entries };
}

/**
 * Verify a dual-signed JWS: exactly one ES256 and one ML-DSA-65 signature
 * over the same payload, the same typ in both headers, and both verify.
 */
export async function verifyDual(
  text: string,
  keys: { classical: KeyResolver; pq: KeyResolver },
  options: { typ?: string } = {},
): Promise<VerifiedJws> {
  const { payload, entries } = parseGeneral(text);
  const classical = entries.find((e) => CLASSICAL_ALGS.includes(e.header.alg as string));
  const quantum = entries.find((e) => e.header.alg === PQ_SIGNATURE_ALG);
  if (!classical || !quantum) throw malformed(`a v2 JWS is signed with ES256 and ${PQ_SIGNATURE_ALG}`);
  for (const e of entries) {
    if (options.typ !== undefined && e.header.typ !== options.typ)
      throw malformed(`unexpected JWS typ ${JSON.stringify(e.header.typ)}; expected ${options.typ}`);
    if (typeof e.header.kid !== 'string') throw malformed('each JWS header names its kid');
  }
  const check = async (e: SignatureEntry, key: KeyResolver, algorithms: string[]) => {
    try {
      await flattenedVerify({ protected: e.protected, payload, signature: e.signature }, key, { algorithms });
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      if (err instanceof errors.JWSInvalid) throw malformed(`signature rejected: ${err.code}`);
      if (err instanceof errors.JOSEError)
        throw new GatewayError('JWS_SIGNATURE_INVALID', `${String(e.header.alg)} signature rejected: ${err.code}`, {
          cause: err,
        });
      throw err;
    }
  };
  await check(classical, keys.classical, CLASSICAL_ALGS);
  await check(quantum, keys.pq, [PQ_SIGNATURE_ALG]);
  return { header: classical.header, payload: fromB64u(payload) };
}
