import { readFileSync } from 'node:fs';
import { resumePartner, suspendPartner } from '../outbound/partner-suspension.ts';
import { loadConfig } from '../config.ts';
import { openDatabase } from '../runtime/database.ts';
import { directoryFromConfig } from '../directory/directory.ts';
import { partnerJson } from '../directory/json.ts';
import { clearPartnerLogAlarm } from '../evidence/partner-log.ts';
import { UsageError, cliOperator, parse, print, table, type Command } from './command.ts';
import { cliLogger } from './logger.ts';

const USAGE = `gateway partners add --id ID --endpoint URL (--jwks-uri URL | --jwks-file FILE) [--name NAME] [--identifier SYSTEM|VALUE]
gateway partners list [--json]
gateway partners remove ID
gateway partners suspend ID | resume ID
gateway partners log-clear ID

Manages the partner directory: each partner is an organisation (id, name)
with one inbox endpoint and its published keys, either a JWKS URI (fetched
and cached by Cache-Control) or an inline JWKS read from FILE.
suspend stops everything to a partner: intake refuses it as a recipient (422)
and its pending deliveries wait, no attempt spent; resume queues them again.
The id is the string agreed with the partner (often its PUBLIC_URL); it is
the aud of what we send it and the iss of its receipts. --identifier registers
the identifier its EHRs use for the organisation (e.g. an NPI): a MessageHeader
receiver or sender identifier with that system and value names this partner.
log-clear lifts the alarm raised when a partner's audit log contradicted a
checkpoint it signed before (partner-log.inconsistent), once investigated: its
next checkpoint is trusted afresh; the alarm's audit entry stays.
Works from a second shell while the gateway runs (same DATABASE_URL or DATA_DIR).`;

async function clearLogAlarm(id: string | undefined): Promise<number> {
  if (!id) throw new UsageError('log-clear needs the partner id');
  const config = loadConfig();
  const db = await openDatabase(config, cliLogger(config));
  try {
    const cleared = await clearPartnerLogAlarm(db.pool, id, cliOperator());
    print(cleared ? `cleared the audit log alarm of partner ${id}` : `partner ${id} has no audit log alarm`);
    return cleared ? 0 : 1;
  } finally {
    await db.close();
  }
}

async function suspendOrResume(sub: 'suspend' | 'resume', id: string | undefined): Promise<number> {
  if (!id) throw new UsageError(`${sub} needs the partner id`);
  const config = loadConfig();
  const db = await openDatabase(config, cliLogger(config));
  try {
    const actor = cliOperator();
    if (sub === 'suspend') {
      await suspendPartner(db.pool, id, actor);
      print(`suspended partner ${id}: nothing is sent to it until it is resumed`);
    } else {
      const n = await resumePartner(db.pool, id, actor);
      print(`resumed partner ${id}; ${n} waiting deliveries queued again`);
    }
    return 0;
  } finally {
    await db.close();
  }
}

export const partnersCommand: Command = {
  name: 'partners',
  summary: 'add, list, remove, suspend and resume partner organisations; clear a partner log alarm',
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parse(
      args,
      {
        id: { type: 'string' },
        endpoint: { type: 'string' },
        'jwks-uri': { type: 'string' },
        'jwks-file': { type: 'string' },
        name: { type: 'string' },
        identifier: { type: 'string' },
        json: { type: 'boolean' },
      },
      true,
    );
    const sub = positionals[0];
    if (sub === 'suspend' || sub === 'resume') return suspendOrResume(sub, positionals[1] ?? values.id);
    if (sub === 'log-clear') return clearLogAlarm(positionals[1] ?? values.id);
    if (sub !== 'add' && sub !== 'list' && sub !== 'remove')
      throw new UsageError(`unknown partners subcommand ${sub ?? '(none)'}`);
    let jwks: unknown;
    let added: { id: string; endpoint: string } | undefined;
    if (sub === 'add') {
      const { id, endpoint } = values;
      if (!id || !endpoint) throw new UsageError('add needs --id and --endpoint');
      added = { id, endpoint };
      if (!values['jwks-uri'] === !values['jwks-file'])
        throw new UsageError('add needs exactly one of --jwks-uri or --jwks-file');
      if (values['jwks-file']) {
        try {
          jwks = JSON.parse(readFileSync(values['jwks-file'], 'utf8'));
        } catch (err) {
          throw new UsageError(`--jwks-file ${values['jwks-file']}: ${(err as Error).message}`);
        }
      }
    }
    const removeId = sub === 'remove' ? (positionals[1] ?? values.id) : undefined;
    if (sub === 'remove' && !removeId) throw new UsageError('remove needs the partner id');
    const config = loadConfig();
    const logger = cliLogger(config);
    const db = await openDatabase(config, logger);
    try {
      const directory = directoryFromConfig(config, { pool: db.pool, fetch: globalThis.fetch, logger });
      if (added) {
        const p = await directory.add(
          {
            ...added,
            name: values.name,
            jwksUri: values['jwks-uri'],
            jwks,
            ...(values.identifier === undefined ? {} : { identifier: splitIdentifier(values.identifier) }),
          },
          cliOperator(),
        );
        print(`added partner ${p.id} (inbox ${p.endpoint})`);
      } else if (removeId) {
        await directory.remove(removeId, cliOperator());
        print(`removed partner ${removeId}`);
      } else {
        const partners = await directory.list();
        if (values.json) print(JSON.stringify(partners.map(partnerJson), null, 2));
        else
          print(
            table(
              partners.map((p) => ({
                id: p.id,
                name: p.name,
                endpoint: p.endpoint,
                keys: p.jwksUri ?? `inline (${p.jwks?.keys.length ?? 0})`,
                status: p.status,
              })),
              ['id', 'name', 'endpoint', 'keys', 'status'],
            ),
          );
      }
      return 0;
    } finally {
      await db.close();
    }
  },
};

/** SYSTEM|VALUE as a FHIR token writes it; the directory checks each part. */
function splitIdentifier(text: string): { system: string; value: string } {
  const bar = text.lastIndexOf('|');
  if (bar <= 0) throw new UsageError('--identifier is SYSTEM|VALUE, e.g. http://hl7.org/fhir/sid/us-npi|1234567893');
  return { system: text.slice(0, bar), value: text.slice(bar + 1) };
}
