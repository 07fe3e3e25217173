import { publicUrls } from '../runtime/public-urls.ts';

/** The lines a person at a terminal needs once the gateway is up: where its API, FHIR base, docs and audit page are. */
export function startBanner(baseUrl: string, org: string): string {
  const urls = publicUrls(baseUrl);
  return [
    `gateway ready: ${org}`,
    `  API            ${urls.api}`,
    `  FHIR base      ${urls.fhir}`,
    `  API reference  ${urls.docs}`,
    `  audit page     ${urls.audit}`,
    '  Ctrl-C stops it gracefully',
  ].join('\n');
}

export interface ReadyOutput {
  /** Whether stdout is a terminal (a person is watching), as process.stdout.isTTY says. */
  isTTY: boolean;
  write(text: string): void;
  log(fields: Record<string, unknown>, message: string): void;
}

/**
 * Say the gateway is ready: always as one log line with its URLs (logs are read by machines too), and
 * as a short banner when stdout is a terminal.
 */
export function announceReady(
  c: { baseUrl: string; org: string },
  fields: Record<string, unknown>,
  out: ReadyOutput,
): void {
  const { fhir, docs, audit } = publicUrls(c.baseUrl);
  out.log({ url: c.baseUrl, org: c.org, ...fields, fhir, docs, audit }, 'gateway ready');
  if (out.isTTY) out.write(`${startBanner(c.baseUrl, c.org)}\n`);
}
