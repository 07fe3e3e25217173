import { readFileSync, writeFileSync } from 'node:fs';
import { loadConfig } from '../config.ts';
import { committedSize, issueCheckpoint, logOrigin } from '../audit/checkpoint.ts';
import { buildEvidencePack } from '../audit/export.ts';
import { buildExchangeEvidence } from '../evidence/exchange-export.ts';
import {
  describeExchangeReport,
  EXCHANGE_EVIDENCE_FORMAT,
  verifyExchangeEvidence,
  type SigningJwk,
} from '../audit/verifier/exchange.ts';
import { ACCOUNT_ROLES, addAuditUser, disableAuditUser, isAccountRole, listAuditUsers } from '../audit/users.ts';
import { lockedNames, unlockLogin } from '../audit/login-backoff.ts';
import { resetFactors } from '../mfa/reset.ts';
import { factorSummary } from '../mfa/factor-store.ts';
import { appendAudit } from '../audit/append.ts';
import { inTransaction } from '../db/pool.ts';
import { verifyLiveLog } from '../audit/verify-db.ts';
import { nodeVerifyDeps } from '../audit/verify-node.ts';
import { describeReport, verifyEvidencePack, type EvidenceKey } from '../audit/verifier/verify.ts';
import {
  DISCLOSURE_FORMAT,
  describeDisclosureVerification,
  verifyDisclosureReport,
} from '../audit/verifier/disclosures.ts';
import { listKeys } from '../keys/store.ts';
import { openContext } from '../runtime/open-context.ts';
import { openDatabase } from '../runtime/database.ts';
import { UsageError, cliOperator, parse, print, table, type Command } from './command.ts';
import { cliLogger } from './logger.ts';
import { required } from '../required.ts';

const USAGE = `gateway audit verify <evidence-pack.json> [--key <jwk.json>]... [--json]
gateway audit verify <disclosure-report.json> [--trail <evidence-pack.json>]... [--key <jwk.json>]... [--json]
gateway audit verify --db [--json]
gateway audit export [--from N] [--to N] [--out FILE]
gateway audit export --exchange ID [--out FILE]
gateway audit checkpoint
gateway audit users add --name NAME [--role compliance|operator] | users list | users disable --name NAME | users unlock NAME
gateway audit users reset-factors NAME

verify FILE   Offline: no database, no network. Checks every checkpoint
              signature, the consistency chain and every entry's inclusion
              proof. Exit 0 only if all hold; otherwise exit 1 and name the
              first bad entry or checkpoint (changed, missing, inserted,
              reordered, bad-signature, inconsistent). Without --key the keys
              inside the pack are used and their kids printed: compare them
              with the audit key ids you recorded, or pin them with --key.
              A disclosure report (from the audit page or POST
              /audit/disclosures) is checked the same way: its checkpoint
              signature, every entry's inclusion proof, and that each line
              says what its entries say. With --trail packs covering the log
              from leaf 0 to the report's checkpoint, it also checks that no
              disclosure of the patient in the period is missing.
verify --db   Checks the live log (DATABASE_URL or DATA_DIR): recomputes every
              leaf hash from its entry and the tree head at every checkpoint.
              A proof bundle of an exchange (see export --exchange) is
              recognised by its format: the sender's entries, each
              recipient's signed receipt, its audit entry for that receipt
              and its signed checkpoint are checked; the problem is named
              (receipt-altered, proof-invalid, checkpoint-signature,
              keys-statement, entry-missing). --key then pins signing keys
              (the JWKs the organisations publish).
export        Writes an evidence pack for leaves [from, to) (default: all).
export --exchange ID
              Writes the proof bundle of one exchange: our entries with
              proofs, and per recipient its receipt, audit entry, inclusion
              proof and checkpoint, as this gateway holds them (the
              recipients are not asked).
checkpoint    Signs a checkpoint now with the HSM audit key (the worker does it every minute).
users add     Creates an account and prints its initial password once: role
              compliance (the default) signs in to /audit/ui, operator to
              /console (deliveries, retries, partner suspension).
users unlock  Lifts the sign-in lockout of NAME (after repeated wrong passwords)
              and clears its backoff; audited. users list shows who is locked.
users reset-factors
              Removes every second factor of NAME (passkeys, authenticator
              app, recovery codes) and ends its sessions; audited. For a
              person who lost them all: with MFA_REQUIRED the next password
              sign-in reaches only the enrolment page. Check who is asking
              before you run it.`;

const dbOptions = {
  db: { type: 'boolean' },
  json: { type: 'boolean' },
  key: { type: 'string', multiple: true },
  trail: { type: 'string', multiple: true },
  from: { type: 'string' },
  to: { type: 'string' },
  out: { type: 'string' },
  exchange: { type: 'string' },
  name: { type: 'string' },
  role: { type: 'string' },
} as const;

function readKeys(files: string[] | undefined): EvidenceKey[] | undefined {
  if (!files?.length) return undefined;
  return files.flatMap((f) => {
    const v = JSON.parse(readFileSync(f, 'utf8')) as EvidenceKey | { keys: EvidenceKey[] };
    return 'keys' in v ? v.keys : [v];
  });
}

function readJson(file: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(readFileSync(file, 'utf8')) };
  } catch (err) {
    process.stderr.write(`gateway audit verify: cannot read ${file}: ${(err as Error).message}\n`);
    return undefined;
  }
}

async function verifyFile(
  file: string,
  keyFiles: string[] | undefined,
  trailFiles: string[] | undefined,
  json: boolean,
): Promise<number> {
  const read = readJson(file);
  if (!read) return 1;
  const pack = read.value;
  const pinned = readKeys(keyFiles);
  if ((pack as { format?: unknown } | null)?.format === EXCHANGE_EVIDENCE_FORMAT) {
    const report = await verifyExchangeEvidence(pack, {
      ...nodeVerifyDeps,
      ...(pinned ? { trustedSigningKeys: pinned as SigningJwk[] } : {}),
    });
    print(json ? JSON.stringify(report, null, 2) : describeExchangeReport(report));
    return report.ok ? 0 : 1;
  }
  // Pinned keys carry no name: they take the pack's log origin (the signature still has to verify).
  const trustedKeys = pinned?.map((k) => ({ ...k, name: k.name ?? (pack as { origin?: string }).origin ?? '' }));
  const deps = { ...nodeVerifyDeps, ...(trustedKeys ? { trustedKeys } : {}) };
  if ((pack as { format?: unknown } | null)?.format === DISCLOSURE_FORMAT) {
    const trail: unknown[] = [];
    for (const f of trailFiles ?? []) {
      const t = readJson(f);
      if (!t) return 1;
      trail.push(t.value);
    }
    const check = await verifyDisclosureReport(pack, deps, trailFiles?.length ? { trail } : {});
    print(json ? JSON.stringify(check, null, 2) : describeDisclosureVerification(check));
    return check.ok ? 0 : 1;
  }
  const report = await verifyEvidencePack(pack, deps);
  print(json ? JSON.stringify(report, null, 2) : describeReport(report));
  return report.ok ? 0 : 1;
}

async function verifyDb(json: boolean): Promise<number> {
  const config = loadConfig();
  const db = await openDatabase(config, cliLogger(config));
  try {
    const origin = await logOrigin(db.pool, config.baseUrl);
    const keys = (await listKeys(db.pool))
      .filter((k) => k.use === 'audit')
      .map((k) => ({ ...(k.public_jwk as object), kid: k.kid, name: origin }) as EvidenceKey);
    const report = await verifyLiveLog(db.pool, keys, nodeVerifyDeps);
    if (json) print(JSON.stringify(report, null, 2));
    else if (report.ok)
      print(`OK: ${report.entries} entries and ${report.checkpoints} signed checkpoints verified in the live log`);
    else {
      const problem = required(report.problem, 'a failed verification to carry its problem');
      print(
        `TAMPERED (${problem.kind}) at ${problem.index !== undefined ? `entry ${problem.index}` : `checkpoint ${problem.checkpoint}`}: ${problem.message}`,
      );
    }
    return report.ok ? 0 : 1;
  } finally {
    await db.close();
  }
}

/** Lift a sign-in lockout (and any backoff), recorded in the audit trail with who did it. */
async function unlockUser(pool: import('pg').Pool, name: string): Promise<string> {
  const failures = await inTransaction(pool, async (c) => {
    const n = await unlockLogin(c, name);
    if (n > 0)
      await appendAudit(c, [
        {
          type: 'compliance.unlocked',
          outcome: 'success',
          agent: cliOperator(),
          entity: [{ type: 'audit-user', id: name }],
          detail: { failures: n },
        },
      ]);
    return n;
  });
  return failures > 0
    ? `unlocked ${name} (${failures} failed sign-ins cleared)`
    : `${name} has no failed sign-ins to clear`;
}

const int = (v: string | undefined, name: string): number | undefined => {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`--${name} must be a whole number`);
  return Number(v);
};

export const auditCommand: Command = {
  name: 'audit',
  summary: 'verify, export and checkpoint the tamper-evident audit log; compliance accounts',
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parse(args, dbOptions, true);
    const [sub, ...rest] = positionals;
    if (sub === 'verify') {
      if (values.db) return verifyDb(!!values.json);
      const [file, ...more] = rest;
      if (file === undefined || more.length > 0) throw new UsageError('give one evidence pack file, or --db');
      return verifyFile(file, values.key, values.trail, !!values.json);
    }
    const config = loadConfig();
    if (sub === 'users') {
      const db = await openDatabase(config, cliLogger(config));
      const named = values.name ?? rest[1];
      try {
        if (rest[0] === 'add' && values.name) {
          const role = values.role ?? 'compliance';
          if (!isAccountRole(role)) throw new UsageError(`--role must be one of ${ACCOUNT_ROLES.join(', ')}`);
          const password = await addAuditUser(db.pool, values.name, role);
          print(`created audit user ${values.name} (role ${role}); initial password (shown once):\n${password}`);
        } else if (rest[0] === 'disable' && values.name) {
          print(
            (await disableAuditUser(db.pool, values.name))
              ? `disabled ${values.name}`
              : `no active user ${values.name}`,
          );
        } else if (rest[0] === 'unlock' && named) {
          print(await unlockUser(db.pool, named));
        } else if (rest[0] === 'reset-factors' && named) {
          const removed = await resetFactors(db.pool, named, cliOperator().id);
          const locked = (await lockedNames(db.pool)).has(named);
          print(
            `reset the second factors of ${named}: ${removed.passkeys} passkey(s), ${removed.totp ? 'the' : 'no'} authenticator app, ${removed.recoveryCodes} unused recovery code(s); its sessions ended${locked ? `\n${named} is also locked: gateway audit users unlock ${named}` : ''}`,
          );
        } else if (rest[0] === 'list') {
          const locked = await lockedNames(db.pool);
          const rows = [];
          for (const u of await listAuditUsers(db.pool)) {
            const f = await factorSummary(db.pool, u.name);
            const factors = [f.passkeys ? `${f.passkeys} passkey(s)` : '', f.totp ? 'totp' : ''].filter(Boolean);
            rows.push({
              name: u.name,
              role: u.role,
              created: u.created_at.toISOString(),
              disabled: u.disabled_at?.toISOString() ?? '',
              locked: locked.has(u.name) ? 'yes' : '',
              factors: factors.join(', '),
            });
          }
          print(table(rows, ['name', 'role', 'created', 'disabled', 'locked', 'factors']));
        } else
          throw new UsageError(
            'users add --name N | users list | users disable --name N | users unlock N | users reset-factors N',
          );
        return 0;
      } finally {
        await db.close();
      }
    }
    if (sub === 'checkpoint' || sub === 'export') {
      const { ctx, close } = await openContext(config, cliLogger(config));
      try {
        if (sub === 'checkpoint') {
          const cp = await issueCheckpoint(ctx);
          print(cp ? cp.note : 'the audit log is empty; nothing to sign');
          return 0;
        }
        const pack = values.exchange
          ? await buildExchangeEvidence(ctx, values.exchange)
          : await buildEvidencePack(
              ctx,
              int(values.from, 'from') ?? 0,
              int(values.to, 'to') ?? (await committedSize(ctx.pool)),
            );
        const text = JSON.stringify(pack, null, 1);
        if (values.out) writeFileSync(values.out, text);
        else print(text);
        return 0;
      } finally {
        await close();
      }
    }
    throw new UsageError(`unknown audit subcommand ${sub ?? '(none)'}`);
  },
};
