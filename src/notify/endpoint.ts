import { GatewayError } from '../errors.ts';

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * Where the gateway may post notifications a client asked for: https, or
 * plain http only to this machine's loopback (a dev EHR). No credentials in
 * the URL and no fragment; redirects are never followed when sending, so the
 * checked URL is the one reached.
 */
export function checkNotifyEndpoint(value: string, parameter: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new GatewayError('INVALID_VALUE', `${parameter} must be an absolute URL`);
  }
  const loopback = LOOPBACK.has(url.hostname) || /^127\.\d+\.\d+\.\d+$/.test(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback))
    throw new GatewayError('INVALID_VALUE', `${parameter} must be https (plain http only on loopback)`);
  if (url.username || url.password) throw new GatewayError('INVALID_VALUE', `${parameter} must carry no credentials`);
  if (url.hash) throw new GatewayError('INVALID_VALUE', `${parameter} must have no fragment`);
  if (value.length > 2048) throw new GatewayError('INVALID_VALUE', `${parameter} is too long`);
  return url.href;
}
