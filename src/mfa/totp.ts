import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * TOTP (RFC 6238) over HOTP (RFC 4226), as authenticator apps speak it:
 * HMAC-SHA-1, 6 digits, 30-second steps from the Unix epoch, the secret in
 * base32 in an otpauth:// URI. Pure functions; the secret's storage and the
 * single-use rule live in factor-store.ts.
 */
export const TOTP = { digits: 6, periodSeconds: 30, secretBytes: 20, skewSteps: 1 } as const;

/** The time step of an instant (RFC 6238 T = floor((now - T0) / X), T0 = 0). */
export function timeStep(now: Date, periodSeconds: number = TOTP.periodSeconds): number {
  return Math.floor(now.getTime() / 1000 / periodSeconds);
}

/** RFC 4226 HOTP with dynamic truncation; `algorithm` only for the RFC 6238 vectors (apps use SHA-1). */
export function hotp(
  secret: Buffer,
  counter: number,
  digits: number = TOTP.digits,
  algorithm: 'sha1' | 'sha256' | 'sha512' = 'sha1',
): string {
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac(algorithm, secret).update(message).digest();
  const offset = (mac[mac.length - 1] ?? 0) & 0x0f;
  const binary = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(binary % 10 ** digits).padStart(digits, '0');
}

/**
 * The time step whose code `code` is, within ±skewSteps of now, or undefined.
 * Every candidate is compared (in constant time), so the answer's timing does
 * not tell which step matched.
 */
export function matchingStep(secret: Buffer, code: string, now: Date): number | undefined {
  if (!new RegExp(`^\\d{${TOTP.digits}}$`).test(code)) return undefined;
  const current = timeStep(now);
  let found: number | undefined;
  for (let step = current - TOTP.skewSteps; step <= current + TOTP.skewSteps; step++) {
    if (timingSafeEqual(Buffer.from(hotp(secret, step)), Buffer.from(code)) && found === undefined) found = step;
  }
  return found;
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 without padding, as otpauth:// URIs carry secrets. */
export function base32(bytes: Buffer): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = ((value << 8) | byte) & 0xfff; // never more than 12 bits are pending
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** The key URI authenticator apps scan (Google Authenticator's otpauth format): issuer, account, secret. */
export function otpauthUri(issuer: string, account: string, secret: Buffer): string {
  const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(account)}`;
  const query = new URLSearchParams({
    secret: base32(secret),
    issuer,
    algorithm: 'SHA1',
    digits: String(TOTP.digits),
    period: String(TOTP.periodSeconds),
  });
  return `otpauth://totp/${label}?${query}`;
}
