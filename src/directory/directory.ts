import type pg from 'pg';
import { GatewayError } from '../errors.ts';
import { required } from '../required.ts';
import { appendAudit, type AuditInput } from '../audit/append.ts';
import type { AuditEventType } from '../audit/events.ts';
import { inTransaction } from '../db/pool.ts';
import { JwksFetcher, DEFAULT_JWKS_LIMITS, type DirectoryLogger as Logger, type JwksLimits } from './jwks-fetch.ts';
import { checkJwks, selectEncryptionKey, type Jwks, type PartnerJwk } from './jwks.ts';
import { everPublishedPqKeys, observePartnerKeys, partnerKeyRecords, type PartnerKeySeen } from './partner-key-log.ts';
import { partnerSigningKey, type KeyScope } from './signing-keys.ts';
import {
  deletePartner,
  findPartner,
  findPartnersByIdOrEndpoint,
  findPartnersByJwksUri,
  insertPartner,
  listPartners,
  updatePartner,
  type Partner,
  type PartnerStatus,
} from './store.ts';
import { isPlainIdentifier } from '../ids.ts';
import { partnerIdentifier } from './identifier.ts';

export type { Partner, PartnerStatus } from './store.ts';
export type { Jwks, PartnerJwk } from './jwks.ts';
export type { KeyScope } from './signing-keys.ts';

/** Who changes the directory, for the audit entry. */
export type DirectoryActor = NonNullable<AuditInput['agent']>;

const CLI_ACTOR: DirectoryActor = { type: 'user', id: 'cli' };
const RESOLVE_TTL_MS = 1_000;

export interface PartnerInput {
  id: string;
  name?: string;
  endpoint: string;
  jwksUri?: string;
  jwks?: unknown;
  status?: PartnerStatus;
  /** The identifier (system and value) its EHRs use for the organisation; optional. */
  identifier?: { system?: unknown; value?: unknown } | undefined;
}

const ID_RE = /^[\x21-\x7e]{1,256}$/;

function httpUrl(value: unknown, field: string): string {
  if (typeof value !== 'string')
    throw new GatewayError('INVALID_VALUE', `${field} is required (an http or https URL)`, { expression: field });
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new GatewayError('INVALID_VALUE', `${field} is not a valid URL`, { expression: field });
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:')
    throw new GatewayError('INVALID_VALUE', `${field} must be an http or https URL`, { expression: field });
  if (u.username || u.password)
    throw new GatewayError('INVALID_VALUE', `${field} must not carry credentials`, { expression: field });
  return u.toString();
}

/** A cached answer and when it was read (the monotonic clock: a step of the wall clock must not keep it). */
interface Cached<T> {
  at: number;
  value: T;
}

/** At most this many answers per cache: past it a cache starts again empty. */
const CACHE_ENTRIES = 1000;

const recent = <T>(hit: Cached<T> | undefined): hit is Cached<T> =>
  hit !== undefined && hit.at > performance.now() - RESOLVE_TTL_MS;

/**
 * Partner organisations (FHIR Organization + Endpoint) and their published
 * keys. Other processes may edit the directory: the reads of intake and of
 * inbound verification, made per message, are cached for RESOLVE_TTL_MS
 * (local changes clear them at once); the other reads go to the database
 * each time. Fetched JWKS documents are cached in memory per process.
 */
export class Directory {
  readonly #pool: pg.Pool;
  readonly #logger: Logger;
  readonly #limits: JwksLimits;
  readonly #resolved = new Map<string, Cached<Partner[]>>();
  readonly #everPq = new Map<string, Cached<boolean>>();
  readonly #senders = new Map<string, Cached<Partner | undefined>>();
  /** The key-transparency log's records of a partner's kid, by partner and kid. */
  readonly #keyRecords = new Map<string, Cached<PartnerKeySeen[]>>();
  readonly #jwks: JwksFetcher;
  /** Counts forget(): a read that began before one is answered but not kept. */
  #generation = 0;

  constructor(deps: { pool: pg.Pool; fetch: typeof fetch; logger: Logger; limits?: Partial<JwksLimits> }) {
    this.#pool = deps.pool;
    this.#logger = deps.logger;
    this.#limits = { ...DEFAULT_JWKS_LIMITS, ...deps.limits };
    // Every fetch is an observation: a key gone from a partner's JWKS is recorded as withdrawn at once.
    this.#jwks = new JwksFetcher(deps.fetch, deps.logger, this.#limits, async (uri, jwks) => {
      for (const p of await findPartnersByJwksUri(this.#pool, uri)) await observePartnerKeys(this.#pool, p.id, jwks);
      this.forget();
    });
  }

  /** Validate input into stored fields; an inline JWKS must carry a usable encryption key. */
  #fields(input: PartnerInput) {
    if (typeof input.id !== 'string' || !ID_RE.test(input.id)) {
      throw new GatewayError(
        'INVALID_VALUE',
        "id must be 1 to 256 printable characters without spaces (e.g. the partner's PUBLIC_URL)",
        { expression: 'id' },
      );
    }
    const name = input.name ?? input.id;
    if (typeof name !== 'string' || name.length === 0 || name.length > 512)
      throw new GatewayError('INVALID_VALUE', 'name must be 1 to 512 characters', { expression: 'name' });
    const endpoint = httpUrl(input.endpoint, 'endpoint');
    const status = input.status ?? 'active';
    if (status !== 'active' && status !== 'suspended')
      throw new GatewayError('INVALID_VALUE', 'status must be active or suspended', { expression: 'status' });
    if ((input.jwksUri === undefined) === (input.jwks === undefined)) {
      throw new GatewayError(
        'INVALID_VALUE',
        "give exactly one of jwks_uri (the partner's published JWKS) or jwks (an inline JWKS)",
        { expression: ['jwks_uri', 'jwks'] },
      );
    }
    const jwksUri = input.jwksUri === undefined ? null : httpUrl(input.jwksUri, 'jwks_uri');
    let jwks: Jwks | null = null;
    if (input.jwks !== undefined) {
      jwks = checkJwks(input.jwks, this.#limits.maxKeys, 'jwks');
      selectEncryptionKey(jwks, input.id);
      if (Buffer.byteLength(JSON.stringify(jwks)) > this.#limits.maxBytes)
        throw new GatewayError('INVALID_VALUE', `jwks exceeds ${this.#limits.maxBytes} bytes`, { expression: 'jwks' });
    }
    return { id: input.id, name, endpoint, jwksUri, jwks, status, identifier: partnerIdentifier(input.identifier) };
  }

  /** Run a change and its audit entry in one transaction. */
  #audited<T>(
    actor: DirectoryActor,
    type: AuditEventType,
    id: string,
    change: (db: import('pg').PoolClient) => Promise<T>,
  ): Promise<T> {
    return inTransaction(this.#pool, async (db) => {
      const out = await change(db);
      await appendAudit(db, [{ type, outcome: 'success', agent: actor, entity: [{ type: 'partner', id }] }]);
      return out;
    }).finally(() => this.forget());
  }

  /** Drop cached answers, after a change to a partner in this process. */
  forget(): void {
    this.#generation++;
    this.#resolved.clear();
    this.#everPq.clear();
    this.#senders.clear();
    this.#keyRecords.clear();
  }

  /** The cached answer if recent, else `read`'s, kept unless forget() ran while it was being read. */
  async #cached<T>(cache: Map<string, Cached<T>>, key: string, read: () => Promise<T>, reread = false): Promise<T> {
    const hit = cache.get(key);
    if (!reread && recent(hit)) return hit.value;
    const generation = this.#generation;
    const value = await read();
    if (generation === this.#generation) {
      if (cache.size >= CACHE_ENTRIES) cache.clear();
      cache.set(key, { at: performance.now(), value });
    }
    return value;
  }

  async add(input: PartnerInput, actor: DirectoryActor = CLI_ACTOR): Promise<Partner> {
    const fields = this.#fields(input);
    try {
      return await this.#audited(actor, 'partner.added', fields.id, async (db) => {
        const added = await insertPartner(db, fields);
        if (added.jwks) await observePartnerKeys(db, added.id, added.jwks);
        return added;
      });
    } catch (err) {
      if ((err as { code?: string }).code === '23505') {
        throw new GatewayError('CONFLICT', `a partner with this id or endpoint already exists`, {
          expression: ['id', 'endpoint'],
        });
      }
      throw err;
    }
  }

  async update(input: PartnerInput, actor: DirectoryActor = CLI_ACTOR): Promise<Partner> {
    const fields = this.#fields(input);
    let updated: Partner | undefined;
    try {
      updated = await this.#audited(actor, 'partner.updated', fields.id, async (db) => {
        const row = await updatePartner(db, fields);
        if (!row) throw new GatewayError('NOT_FOUND', `no partner ${input.id}`);
        // An inline JWKS is observed as it is stored: a key it drops is withdrawn from this moment.
        if (row.jwks) await observePartnerKeys(db, row.id, row.jwks);
        return row;
      });
    } catch (err) {
      if ((err as { code?: string }).code === '23505')
        throw new GatewayError('CONFLICT', 'another partner already uses this endpoint', { expression: 'endpoint' });
      throw err;
    }
    if (!updated) throw new GatewayError('NOT_FOUND', `no partner ${input.id}`);
    if (updated.jwksUri) await this.#lookNow(updated.id, updated.jwksUri);
    return updated;
  }

  /** Fetch a changed JWKS URI now, so its keys (and any it dropped) are recorded at once; a failure waits for the next use. */
  async #lookNow(partnerId: string, jwksUri: string): Promise<void> {
    this.#jwks.forget(jwksUri);
    try {
      await this.#jwks.get(jwksUri);
    } catch (err) {
      this.#logger.warn(
        { partner: partnerId, reason: (err as Error).message },
        'partner JWKS not fetched after the update',
      );
    }
  }

  async remove(id: string, actor: DirectoryActor = CLI_ACTOR): Promise<void> {
    await this.#audited(actor, 'partner.removed', id, async (db) => {
      if (!(await deletePartner(db, id))) throw new GatewayError('NOT_FOUND', `no partner ${id}`);
    });
  }

  async get(id: string): Promise<Partner | undefined> {
    if (!isPlainIdentifier(id)) return undefined;
    return findPartner(this.#pool, id);
  }

  /**
   * A partner as the sender of signed content (inbound verification, once
   * per message): cached like resolve(), so a suspension made by another
   * process applies to inbound content within RESOLVE_TTL_MS.
   */
  async sender(id: string): Promise<Partner | undefined> {
    if (!isPlainIdentifier(id)) return undefined;
    return this.#cached(this.#senders, id, () => findPartner(this.#pool, id));
  }

  async require(id: string): Promise<Partner> {
    const p = isPlainIdentifier(id) ? await findPartner(this.#pool, id) : undefined;
    if (!p) throw new GatewayError('NOT_FOUND', `no partner ${JSON.stringify(id)}`);
    return p;
  }

  async list(): Promise<Partner[]> {
    return listPartners(this.#pool);
  }

  /**
   * Partners by id or inbox URL, for intake; the caller reports the ones not
   * found. Answers are cached for RESOLVE_TTL_MS (a query per submission is a
   * measurable share of intake cost): a change made by another process (the
   * CLI) reaches intake within that time; local changes clear the cache.
   */
  async resolve(
    refs: string[],
    identifiers: ReadonlyArray<{ system: string; value: string }> = [],
  ): Promise<Partner[]> {
    if (refs.length === 0 && identifiers.length === 0) return [];
    const key = JSON.stringify([refs, identifiers]);
    return this.#cached(this.#resolved, key, () => findPartnersByIdOrEndpoint(this.#pool, refs, identifiers));
  }

  async #keys(p: Partner): Promise<Jwks> {
    return p.jwks ?? this.#jwks.get(jwksUriOf(p));
  }

  /** The partner's published key set (inline, or fetched and cached from its jwks_uri). */
  async publishedKeys(p: Partner): Promise<Jwks> {
    return this.#keys(p);
  }

  /**
   * Whether the key-transparency log has ever seen the partner publish a
   * post-quantum key. Once true it stays true (the log keeps every key it
   * saw); a false answer is cached like resolve().
   */
  async hasPublishedPqKeys(partnerId: string): Promise<boolean> {
    if (this.#everPq.get(partnerId)?.value) return true;
    return this.#cached(this.#everPq, partnerId, () => everPublishedPqKeys(this.#pool, partnerId));
  }

  /** The partner's current encryption key (use enc, ECDH-ES, P-256/P-384); refused with a clear error if unusable. */
  async encryptionKey(partnerOrId: string | Partner): Promise<PartnerJwk & { kid: string }> {
    const p = typeof partnerOrId === 'string' ? await this.require(partnerOrId) : partnerOrId;
    return selectEncryptionKey(await this.#keys(p), p.id);
  }

  /**
   * The partner's signing key with this kid, within `scope`: 'current' for
   * new inbound content, { signedAt } for stored items and receipts (see
   * KeyScope). A key we cannot use triggers one JWKS refetch (with a cooldown).
   */
  async verificationKey(partnerOrId: string | Partner, kid: string, scope: KeyScope): Promise<PartnerJwk> {
    const p = typeof partnerOrId === 'string' ? await this.require(partnerOrId) : partnerOrId;
    if (!isPlainIdentifier(kid))
      throw new GatewayError('FORBIDDEN', `partner ${p.id} publishes no signing key with that kid`);
    const uri = p.jwksUri;
    const recordsKey = JSON.stringify([p.id, kid]);
    return partnerSigningKey(this.#pool, this.#logger, p.id, kid, scope, {
      jwks: () => this.#keys(p),
      refetch: async () => (uri && (await this.#jwks.refreshForUnknownKid(uri)) ? this.#jwks.get(uri) : undefined),
      records: ({ reread }) =>
        this.#cached(this.#keyRecords, recordsKey, () => partnerKeyRecords(this.#pool, p.id, kid), reread),
    });
  }

  /** The partner's JWKS fetched now (inline: as stored), for the key refresh job; throws if the fetch fails. */
  async refreshKeys(p: Partner): Promise<Jwks> {
    return p.jwks ?? this.#jwks.refreshNow(jwksUriOf(p));
  }
}

/** Where a partner without inline keys publishes them: the directory stores one or the other. */
const jwksUriOf = (p: Partner): string =>
  required(p.jwksUri ?? undefined, 'a jwks_uri on a partner without inline keys');

/** The Directory with its limits taken from the configuration (JWKS_TIMEOUT, JWKS_MAX_BYTES, JWKS_REFRESH_COOLDOWN). */
export function directoryFromConfig(
  config: { jwksTimeout: number; jwksMaxBytes: number; jwksRefreshCooldown: number },
  deps: { pool: pg.Pool; fetch: typeof fetch; logger: Logger },
): Directory {
  return new Directory({
    ...deps,
    limits: { timeoutMs: config.jwksTimeout, maxBytes: config.jwksMaxBytes, cooldownMs: config.jwksRefreshCooldown },
  });
}
