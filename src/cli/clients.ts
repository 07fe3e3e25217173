import { readFileSync } from 'node:fs';
import { loadConfig } from '../config.ts';
import { openDatabase, type Database } from '../runtime/database.ts';
import { appendAudit } from '../audit/append.ts';
import { inTransaction as inDbTransaction } from '../db/pool.ts';
import { GatewayError } from '../errors.ts';
import {
  listClients,
  registerClient,
  setClientEnabled,
  updateClientSettings,
  clientSettingsDetail,
} from '../auth/clients.ts';
import { parseScopes, readsButReceivesNothing } from '../auth/scopes.ts';
import { bindPartnerCertificate, listTlsBindings, unbindCertificate } from '../auth/tls-bindings.ts';
import { UsageError, cliOperator, parse, print, table, type Command } from './command.ts';
import { cliLogger } from './logger.ts';

/** Open the database (no HSM: works from a second shell while the gateway runs) and run fn in one transaction. */
async function inTransaction<T>(fn: (db: import('pg').PoolClient) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const database: Database = await openDatabase(config, cliLogger(config));
  try {
    return await inDbTransaction(database.pool, fn);
  } catch (err) {
    if (err instanceof GatewayError && err.status < 500) throw new UsageError(err.message);
    throw err;
  } finally {
    await database.close();
  }
}

/** --purpose-of-use, repeatable, each a comma-separated list of codes (checked by the registry). */
const purposeCodes = (values: string[] | undefined): string[] | undefined =>
  values?.flatMap((v) => v.split(',').map((c) => c.trim()));

export const clientsCommand: Command = {
  name: 'clients',
  summary: 'register, list and disable API clients (SMART Backend Services)',
  usage: `gateway clients add --id ID (--jwks-uri URL | --jwks-file FILE) --scope "SCOPES" [--name NAME] [--rate-limit N]
                    [--receives-from PARTNER]... [--purpose-of-use CODES]
gateway clients update --id ID [--receives-from PARTNER... | --receives-nothing] [--purpose-of-use CODES]
gateway clients list [--json]
gateway clients disable --id ID
gateway clients enable --id ID

Clients authenticate at POST /auth/token with a JWT signed by a key of their
JWKS (private_key_jwt) and receive 5-minute access tokens. Scopes:
  system/Bundle.write (or system/*.write)  send bundles
  system/*.read                            read own exchanges and inbox messages
  system/AuditEvent.read                   read the audit trail
  system/gateway.admin                     manage clients, partners and keys
Inbox routing: a client lists, reads and acknowledges only the received
messages of the partners named by --receives-from (repeat it; '*' = every
partner). Without it the client receives nothing (fail closed, and add warns
about it on stderr when the client has a read scope); route
partners to it later with \`gateway clients update --id ID --receives-from P\`
(replaces the list). A token with system/gateway.admin sees every message.
Purpose of use: --purpose-of-use TREAT,HOPERAT (HL7 PurposeOfUse codes of
v3-ActReason) is what the client's submissions carry when they state none
(Purpose-Of-Use header, MessageHeader.reason); without it they carry TREAT.
The first admin client can only be registered here (the CLI has database access):
  gateway clients add --id ops-console --jwks-file ops.jwks.json --scope system/gateway.admin
Disabling revokes the client's live tokens at once. Reads and writes the
database only, so it works from a second shell while the gateway runs.`,
  async run(args) {
    const { values, positionals } = parse(
      args,
      {
        id: { type: 'string' },
        name: { type: 'string' },
        'jwks-uri': { type: 'string' },
        'jwks-file': { type: 'string' },
        scope: { type: 'string' },
        'rate-limit': { type: 'string' },
        json: { type: 'boolean' },
        'receives-from': { type: 'string', multiple: true },
        'receives-nothing': { type: 'boolean' },
        'purpose-of-use': { type: 'string', multiple: true },
      },
      true,
    );
    const sub = positionals[0];
    if (sub === 'list') {
      const config = loadConfig();
      const database = await openDatabase(config, cliLogger(config));
      try {
        const clients = await listClients(database.pool);
        if (values.json) print(JSON.stringify(clients, null, 2));
        else
          print(
            table(
              clients.map((c) => ({
                id: c.id,
                name: c.name,
                enabled: String(c.enabled),
                scopes: c.scopes.join(' '),
                'receives from': c.receivesFrom.join(' ') || '(nothing)',
                'purpose of use': c.purposeOfUse.join(',') || '(TREAT)',
                keys: c.jwksUri ?? `inline (${c.jwks?.keys.length ?? 0})`,
              })),
              ['id', 'name', 'enabled', 'scopes', 'receives from', 'purpose of use', 'keys'],
            ),
          );
        return 0;
      } finally {
        await database.close();
      }
    }
    const id = values.id ?? positionals[1];
    if (!id) throw new UsageError('--id is required');
    if (sub === 'add') {
      const { scope } = values;
      if (!scope) throw new UsageError('--scope is required, e.g. --scope "system/Bundle.write system/*.read"');
      if (Boolean(values['jwks-uri']) === Boolean(values['jwks-file']))
        throw new UsageError('give exactly one of --jwks-uri and --jwks-file');
      let jwks: unknown;
      if (values['jwks-file']) {
        try {
          jwks = JSON.parse(readFileSync(values['jwks-file'], 'utf8'));
        } catch (err) {
          throw new UsageError(`--jwks-file ${values['jwks-file']}: ${(err as Error).message}`);
        }
      }
      const rateLimit = values['rate-limit'] === undefined ? undefined : Number(values['rate-limit']);
      const c = await inTransaction(async (db) => {
        const created = await registerClient(db, {
          id,
          name: values.name,
          jwks,
          jwksUri: values['jwks-uri'],
          scopes: parseScopes(scope),
          rateLimit,
          receivesFrom: values['receives-from'],
          purposeOfUse: purposeCodes(values['purpose-of-use']),
        });
        await appendAudit(db, [
          {
            type: 'client.registered',
            outcome: 'success',
            agent: cliOperator(),
            entity: [{ type: 'client', id }],
            detail: { scope: created.scopes.join(' '), ...clientSettingsDetail(created) },
          },
        ]);
        return created;
      });
      print(
        `registered client ${c.id} with scopes: ${c.scopes.join(' ')}; receives from: ${c.receivesFrom.join(' ') || 'nothing (see gateway clients update --help)'}`,
      );
      if (readsButReceivesNothing(c.scopes, c.receivesFrom))
        process.stderr.write(
          `gateway clients: warning: ${c.id} may read the inbox but receives from no partner, so it will see no message ` +
            `until it is routed: gateway clients update --id ${c.id} --receives-from PARTNER (or '*' for every partner)\n`,
        );
      return 0;
    }
    if (sub === 'update') {
      const list = values['receives-from'];
      const purpose = purposeCodes(values['purpose-of-use']);
      if (list && values['receives-nothing'])
        throw new UsageError('give --receives-from or --receives-nothing, not both');
      if (!list && !values['receives-nothing'] && !purpose)
        throw new UsageError('give --receives-from PARTNER (repeatable), --receives-nothing or --purpose-of-use CODES');
      const routing = list ?? (values['receives-nothing'] ? [] : undefined);
      const c = await inTransaction(async (db) => {
        const updated = await updateClientSettings(db, id, { receivesFrom: routing, purposeOfUse: purpose });
        if (!updated) throw new UsageError(`no client ${id}`);
        await appendAudit(db, [
          {
            type: 'client.updated',
            outcome: 'success',
            agent: cliOperator(),
            entity: [{ type: 'client', id }],
            detail: clientSettingsDetail(updated),
          },
        ]);
        return updated;
      });
      print(
        `client ${c.id} receives from: ${c.receivesFrom.join(' ') || 'nothing'}; purpose of use: ${c.purposeOfUse.join(',') || 'none registered (TREAT)'}`,
      );
      return 0;
    }
    if (sub === 'disable' || sub === 'enable') {
      await inTransaction(async (db) => {
        if (!(await setClientEnabled(db, id, sub === 'enable'))) throw new UsageError(`no client ${id}`);
        await appendAudit(db, [
          { type: `client.${sub}d`, outcome: 'success', agent: cliOperator(), entity: [{ type: 'client', id }] },
        ]);
      });
      print(`client ${id} ${sub}d`);
      return 0;
    }
    throw new UsageError(`unknown clients subcommand ${sub ?? '(none)'}; try add, update, list, disable or enable`);
  },
};

export const tlsCommand: Command = {
  name: 'tls',
  summary: 'bind partner certificates for mutual TLS on the peer routes',
  usage: `gateway tls bind --partner PARTNER_ID (--cert FILE.pem | --sha256 HEX)
gateway tls list [--json]
gateway tls unbind --sha256 HEX

With TLS_CLIENT_CA_FILE set, a peer posting to /inbox must present a
certificate issued by that CA AND bound here to a partner. Works from a second shell.`,
  async run(args) {
    const { values, positionals } = parse(
      args,
      { partner: { type: 'string' }, cert: { type: 'string' }, sha256: { type: 'string' }, json: { type: 'boolean' } },
      true,
    );
    const sub = positionals[0];
    if (sub === 'list') {
      const rows = await inTransaction((db) => listTlsBindings(db));
      print(
        values.json
          ? JSON.stringify(rows, null, 2)
          : table(
              rows.map((r) => ({ partner: r.partnerId, sha256: r.certSha256, created: r.createdAt ?? '' })),
              ['partner', 'sha256', 'created'],
            ),
      );
      return 0;
    }
    if (sub === 'bind') {
      if (!values.partner) throw new UsageError('--partner is required');
      let certPem: string | undefined;
      if (values.cert) {
        try {
          certPem = readFileSync(values.cert, 'utf8');
        } catch (err) {
          throw new UsageError(`--cert ${values.cert}: ${(err as Error).message}`);
        }
      }
      const b = await inTransaction(async (db) => {
        const out = await bindPartnerCertificate(db, { partnerId: values.partner, certPem, certSha256: values.sha256 });
        await appendAudit(db, [
          {
            type: 'tls.bound',
            outcome: 'success',
            agent: cliOperator(),
            entity: [{ type: 'partner', id: out.partnerId, digest: out.certSha256 }],
          },
        ]);
        return out;
      });
      print(`certificate ${b.certSha256} bound to partner ${b.partnerId}`);
      return 0;
    }
    if (sub === 'unbind') {
      const { sha256 } = values;
      if (!sha256) throw new UsageError('--sha256 is required');
      await inTransaction(async (db) => {
        const partnerId = await unbindCertificate(db, sha256);
        if (!partnerId) throw new UsageError('no such binding');
        await appendAudit(db, [
          {
            type: 'tls.unbound',
            outcome: 'success',
            agent: cliOperator(),
            entity: [{ type: 'partner', id: partnerId, digest: sha256 }],
          },
        ]);
      });
      print('unbound');
      return 0;
    }
    throw new UsageError(`unknown tls subcommand ${sub ?? '(none)'}; try bind, list or unbind`);
  },
};
