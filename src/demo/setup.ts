import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { SCOPE_ADMIN, SCOPE_ALL_READ, SCOPE_AUDIT_READ, SCOPE_BUNDLE_WRITE } from '../auth/scopes.ts';
import type { DemoGateway } from './gateway-process.ts';
import { ApiClient, clientKeyFiles, ensureClientKey } from './ehr-client.ts';
import { shellWord, shownPath, type StepsPrinter } from './steps-printer.ts';

export const ADMIN_CLIENT = 'demo-admin';
export const EHR_CLIENT = 'demo-ehr';
const ADMIN_SCOPE = `${SCOPE_ADMIN} ${SCOPE_AUDIT_READ}`;
const EHR_SCOPE = `${SCOPE_BUNDLE_WRITE} ${SCOPE_ALL_READ}`;

/** What each organisation has once it is set up: its gateway, an operator's console and its EHR. */
export interface Organisation {
  gateway: DemoGateway;
  /** Shell variable of its base URL in the printed commands ("A", "B"). */
  variable: string;
  admin: ApiClient;
  ehr: ApiClient;
}

/** The environment a second shell needs for admin commands on this gateway, as a command prefix. */
export function envPrefix(gateway: DemoGateway): string {
  return `DATA_DIR=${shellWord(shownPath(gateway.env.DATA_DIR ?? ''))}`;
}

function runCli(entry: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [entry, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, err }));
  });
}

/**
 * The first administrator can only be registered with the CLI (it has database access); everything
 * after that goes through the admin API with that administrator's token. Both gateways' commands are
 * printed first, then run side by side.
 */
async function registerAdmins(entry: string, gateways: DemoGateway[], printer: StepsPrinter): Promise<void> {
  const commands: Array<{ gateway: DemoGateway; args: string[] }> = [];
  for (const gateway of gateways) {
    const keys = clientKeyFiles(join(gateway.dataDir, 'clients'), ADMIN_CLIENT);
    await ensureClientKey(keys);
    const args = ['clients', 'add', '--id', ADMIN_CLIENT, '--jwks-file', keys.jwks, '--scope', ADMIN_SCOPE];
    const shown = args.map((a) => shellWord(a === keys.jwks ? shownPath(a) : a)).join(' ');
    printer.command(`${envPrefix(gateway)} npx gateway ${shown}`);
    commands.push({ gateway, args });
  }
  const results = await Promise.all(commands.map((c) => runCli(entry, c.args, c.gateway.env)));
  for (const [i, { code, err }] of results.entries()) {
    const label = commands[i]?.gateway.label;
    if (code === 0) continue;
    if (err.includes('already exists')) printer.info(`(gateway ${label}: registered by an earlier run)`);
    else throw new Error(`gateway clients add on ${label} failed (${code}): ${err.trim()}`);
  }
}

/** POST, or PUT when an earlier run registered it (the ports, so the URLs, may have changed since). */
async function registerPartner(self: Organisation, other: Organisation): Promise<void> {
  const o = other.gateway;
  const body = {
    id: o.org,
    name: `Hospital ${o.label} (demo)`,
    endpoint: `${o.url}/inbox`,
    jwks_uri: `${o.url}/.well-known/jwks.json`,
  };
  const res = await self.admin.request('POST', '/admin/partners', { json: body });
  if (res.status === 201) return;
  if (res.status !== 409)
    throw new Error(`POST /admin/partners on ${self.gateway.label}: ${res.status} ${await res.text()}`);
  await self.admin.json('PUT', `/admin/partners/${encodeURIComponent(o.org)}`, { json: body }, [200], true);
  self.admin.printer.info('(registered by an earlier run: updated with PUT /admin/partners/{id})');
}

/** The EHR client: sends bundles and imaging, reads its exchanges, and receives what the partner sends. */
async function registerEhr(self: Organisation, other: Organisation): Promise<void> {
  const keys = clientKeyFiles(join(self.gateway.dataDir, 'clients'), EHR_CLIENT);
  const { jwks } = await ensureClientKey(keys);
  const res = await self.admin.request('POST', '/admin/clients', {
    json: {
      id: EHR_CLIENT,
      name: `EHR of hospital ${self.gateway.label}`,
      scope: EHR_SCOPE,
      jwks,
      receives_from: [other.gateway.org],
    },
  });
  if (res.status === 201) return;
  if (res.status !== 409)
    throw new Error(`POST /admin/clients on ${self.gateway.label}: ${res.status} ${await res.text()}`);
  self.admin.printer.info('(registered by an earlier run)');
}

export function organisation(gateway: DemoGateway, printer: StepsPrinter): Organisation {
  const variable = gateway.label;
  const clients = join(gateway.dataDir, 'clients');
  const target = { url: gateway.url, variable };
  return {
    gateway,
    variable,
    admin: new ApiClient({
      id: ADMIN_CLIENT,
      gateway: target,
      scope: ADMIN_SCOPE,
      keys: clientKeyFiles(clients, ADMIN_CLIENT),
      printer,
      tokenVariable: `ADMIN_${variable}`,
    }),
    ehr: new ApiClient({
      id: EHR_CLIENT,
      gateway: target,
      scope: EHR_SCOPE,
      keys: clientKeyFiles(clients, EHR_CLIENT),
      printer,
      tokenVariable: `EHR_${variable}`,
    }),
  };
}

/** Administrators, partners both ways, and an EHR client on each side routed to receive from the other. */
export async function setUp(entry: string, a: Organisation, b: Organisation, printer: StepsPrinter): Promise<void> {
  printer.step('Register an administrator on each gateway (the CLI: the first administrator has no API)');
  await registerAdmins(entry, [a.gateway, b.gateway], printer);

  printer.step('Make the two gateways partners (admin API: inbox URL and published keys of the other)');
  await registerPartner(a, b);
  await registerPartner(b, a);

  printer.step("Register each hospital's EHR as an API client (SMART Backend Services, key in the demo folder)");
  await registerEhr(a, b);
  await registerEhr(b, a);
}
