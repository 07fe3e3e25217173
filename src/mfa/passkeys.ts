import { randomBytes } from 'node:crypto';
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import type { Queryable } from '../db/pool.ts';
import { CHALLENGE_TTL_MS, rememberChallenge, takeChallenge } from './challenges.ts';
import { addPasskey, passkeyById, passkeyDescriptors, recordPasskeyUse, userHandleOf } from './factor-store.ts';

/**
 * Passkeys (WebAuthn) through @simplewebauthn/server. The relying party is
 * PUBLIC_URL: its host is the RP id and its origin the only origin accepted.
 * User verification is required in both ceremonies, challenges are single
 * use and bound to the session that asked, only the public key is stored,
 * and every use must raise the signature counter (or keep it at zero, for
 * authenticators that do not count).
 */
export interface RelyingParty {
  id: string;
  origin: string;
  name: string;
}

/**
 * COSE algorithms accepted: ES256, EdDSA, RS256 (the ones every authenticator
 * offers). The library would add ML-DSA-44 where the runtime has it; that is
 * still experimental in Node, so it is left out until it is not.
 */
const ALGORITHMS = [-7, -8, -257];

export function relyingParty(baseUrl: string): RelyingParty {
  const url = new URL(baseUrl);
  return { id: url.hostname, origin: url.origin, name: `FHIR exchange gateway (${url.host})` };
}

/** A ceremony's outcome: what it proved, or why it was refused (the reason goes to the audit trail). */
export type PasskeyOutcome<T> = { ok: true; value: T } | { ok: false; reason: string; name?: string };

/** Why the library refused a response, as a short reason code; its message may echo client input, so it is not kept. */
function refusalReason(err: unknown): string {
  const message = err instanceof Error ? err.message : '';
  if (/origin/i.test(message)) return 'wrong_origin';
  if (/RP ID/i.test(message)) return 'wrong_rp_id';
  if (/user verification|could not be verified/i.test(message)) return 'user_not_verified';
  if (/counter/i.test(message)) return 'counter_not_increased';
  if (/challenge/i.test(message)) return 'wrong_challenge';
  return 'invalid_response';
}

/** The challenge a browser's response claims to answer (clientDataJSON.challenge), if it is readable at all. */
function claimedChallenge(response: unknown): string | undefined {
  const data = (response as { response?: { clientDataJSON?: unknown } } | null)?.response?.clientDataJSON;
  if (typeof data !== 'string' || data.length > 4096) return undefined;
  try {
    const challenge = (JSON.parse(Buffer.from(data, 'base64url').toString('utf8')) as { challenge?: unknown })
      .challenge;
    return typeof challenge === 'string' && /^[A-Za-z0-9_-]{16,128}$/.test(challenge) ? challenge : undefined;
  } catch {
    return undefined;
  }
}

export async function registrationOptions(
  db: Queryable,
  rp: RelyingParty,
  name: string,
  sessionHash: Buffer,
): Promise<PublicKeyCredentialCreationOptionsJSON> {
  const userHandle = (await userHandleOf(db, name)) ?? randomBytes(16);
  const options = await generateRegistrationOptions({
    rpName: rp.name,
    rpID: rp.id,
    userName: name,
    userID: new Uint8Array(userHandle),
    userDisplayName: name,
    attestationType: 'none',
    excludeCredentials: await passkeyDescriptors(db, name),
    // Discoverable where the authenticator can, so the passkey alone can sign in.
    authenticatorSelection: { residentKey: 'preferred', userVerification: 'required' },
    supportedAlgorithmIDs: ALGORITHMS,
    timeout: CHALLENGE_TTL_MS,
  });
  await rememberChallenge(db, options.challenge, 'registration', sessionHash, userHandle);
  return options;
}

/** Verify a registration and keep the credential's public key; returns its credential id. */
export async function finishRegistration(
  db: Queryable,
  rp: RelyingParty,
  name: string,
  sessionHash: Buffer,
  response: unknown,
): Promise<PasskeyOutcome<string>> {
  const challenge = claimedChallenge(response);
  if (!challenge) return { ok: false, reason: 'malformed_response' };
  const issued = await takeChallenge(db, challenge, 'registration', sessionHash);
  if (!issued?.userHandle) return { ok: false, reason: 'unknown_challenge' };
  let verified;
  try {
    verified = await verifyRegistrationResponse({
      response: response as RegistrationResponseJSON,
      expectedChallenge: challenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.id,
      requireUserVerification: true,
      supportedAlgorithmIDs: ALGORITHMS,
    });
  } catch (err) {
    return { ok: false, reason: refusalReason(err) };
  }
  if (!verified.verified) return { ok: false, reason: 'not_verified' };
  const info = verified.registrationInfo;
  const added = await addPasskey(db, {
    credentialId: info.credential.id,
    userName: name,
    userHandle: issued.userHandle,
    publicKey: Buffer.from(info.credential.publicKey),
    signCount: info.credential.counter,
    transports: (info.credential.transports ?? []).slice(0, 8),
    backedUp: info.credentialBackedUp,
  });
  return added ? { ok: true, value: info.credential.id } : { ok: false, reason: 'already_registered' };
}

/**
 * Options for an assertion: for `name`'s passkeys (the second factor), or
 * for any discoverable passkey (a sign-in with the passkey alone, no session).
 */
export async function authenticationOptions(
  db: Queryable,
  rp: RelyingParty,
  name: string | undefined,
  sessionHash: Buffer | undefined,
): Promise<PublicKeyCredentialRequestOptionsJSON> {
  const options = await generateAuthenticationOptions({
    rpID: rp.id,
    allowCredentials: name ? await passkeyDescriptors(db, name) : [],
    userVerification: 'required',
    timeout: CHALLENGE_TTL_MS,
  });
  await rememberChallenge(db, options.challenge, 'authentication', sessionHash);
  return options;
}

/** Verify an assertion; returns the account it signs in (it must be `expectedName` when one is given). */
export async function finishAuthentication(
  db: Queryable,
  rp: RelyingParty,
  expectedName: string | undefined,
  sessionHash: Buffer | undefined,
  response: unknown,
): Promise<PasskeyOutcome<{ name: string; credentialId: string }>> {
  const challenge = claimedChallenge(response);
  if (!challenge) return { ok: false, reason: 'malformed_response' };
  if (!(await takeChallenge(db, challenge, 'authentication', sessionHash)))
    return { ok: false, reason: 'unknown_challenge' };
  const id = (response as { id?: unknown }).id;
  const stored = typeof id === 'string' && id.length <= 1024 ? await passkeyById(db, id) : undefined;
  if (!stored) return { ok: false, reason: 'unknown_passkey' };
  if (expectedName !== undefined && stored.userName !== expectedName)
    return { ok: false, reason: 'passkey_of_another_account' };
  const refused = (reason: string) => ({ ok: false as const, reason, name: stored.userName });
  let verified;
  try {
    verified = await verifyAuthenticationResponse({
      response: response as AuthenticationResponseJSON,
      expectedChallenge: challenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.id,
      credential: {
        id: stored.credentialId,
        publicKey: new Uint8Array(stored.publicKey),
        counter: stored.signCount,
        transports: stored.transports,
      },
      requireUserVerification: true,
    });
  } catch (err) {
    return refused(refusalReason(err));
  }
  if (!verified.verified) return refused('bad_signature');
  if (!(await recordPasskeyUse(db, stored.credentialId, stored.signCount, verified.authenticationInfo.newCounter)))
    return refused('counter_not_increased');
  return { ok: true, value: { name: stored.userName, credentialId: stored.credentialId } };
}
