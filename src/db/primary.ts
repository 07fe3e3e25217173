import pg from 'pg';

/**
 * libpq's multi-host connection strings for node-postgres, which takes one
 * host only: `postgres://user:pw@a:5432,b:5432/db?target_session_attrs=read-write`.
 * Each new connection goes to the host last found to be the primary; when
 * none is known (at start, or after that host failed), the hosts are tried
 * in order and the first whose sessions are read-write is chosen. With no
 * read-write host (the primary is gone and no standby is promoted yet) a
 * connection fails as "unavailable", so requests get 503 until one is.
 */

export interface HostPort {
  host: string;
  port: number;
}

export interface MultiHostUrl {
  /** At least two. */
  hosts: [HostPort, ...HostPort[]];
  /** The URL for one host, everything else unchanged. */
  urlFor(host: HostPort): string;
  /** `read-write` (the default here: the gateway writes) or `any`: take the first host that answers. */
  targetSessionAttrs: 'read-write' | 'any';
}

const URL_SHAPE = /^(postgres(?:ql)?:\/\/)([^@/?]*@)?([^/?]*)(.*)$/;

function hostPort(spec: string): HostPort {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(spec);
  if (!m?.[1]) throw new Error(`DATABASE_URL: cannot read host "${spec}"`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port: m[2] ? Number(m[2]) : 5432 };
}

/** The hosts of a multi-host URL, or undefined for a URL naming a single host. */
export function parseMultiHostUrl(url: string): MultiHostUrl | undefined {
  const m = URL_SHAPE.exec(url);
  const [, scheme = '', userinfo = '', hostList = '', rest = ''] = m ?? [];
  if (!hostList.includes(',')) return undefined;
  const hosts = hostList.split(',').map(hostPort) as [HostPort, ...HostPort[]];
  const [path, query = ''] = rest.split('?', 2) as [string, string?];
  const params = new URLSearchParams(query);
  const attrs = params.get('target_session_attrs') ?? 'read-write';
  if (attrs !== 'read-write' && attrs !== 'any')
    throw new Error(`DATABASE_URL: target_session_attrs=${attrs} is not supported (read-write or any)`);
  params.delete('target_session_attrs');
  const tail = params.size ? `${path}?${params}` : path;
  const spell = (h: HostPort) => `${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}`;
  return { hosts, targetSessionAttrs: attrs, urlFor: (h) => `${scheme}${userinfo}${spell(h)}${tail}` };
}

/** The error a connection meets when no listed host is a primary; pool.ts's callers read it as "unavailable". */
export class NoPrimaryError extends Error {
  readonly code = '08001'; // sqlclient_unable_to_establish_sqlconnection, as libpq reports it
  constructor(detail: string) {
    super(`no read-write database server among the listed hosts: ${detail}`);
  }
}

/**
 * How long a new connection may take, the pool's and the primary probe's
 * alike: a probe quicker to give up than the pool would call a loaded but
 * healthy primary absent.
 */
export const CONNECT_TIMEOUT_MS = 5_000;

/** Which listed host is the primary now: remembered until a connection to it fails. */
export class PrimarySelector {
  private known: HostPort | undefined;
  private probing: Promise<HostPort> | undefined;

  private readonly target: MultiHostUrl;

  constructor(target: MultiHostUrl) {
    this.target = target;
  }

  /** The primary, probing the hosts in order when none is known; concurrent callers share one probe. */
  primary(): Promise<HostPort> {
    if (this.known) return Promise.resolve(this.known);
    this.probing ??= this.probe().finally(() => (this.probing = undefined));
    return this.probing;
  }

  /** A connection to this host failed, or it turned out read-only: find the primary afresh next time. */
  forget(host: HostPort): void {
    if (this.known === host) this.known = undefined;
  }

  private async probe(): Promise<HostPort> {
    const faults: string[] = [];
    for (const host of this.target.hosts) {
      const client = new pg.Client({
        connectionString: this.target.urlFor(host),
        connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      });
      client.on('error', () => undefined);
      try {
        await client.connect();
        if (this.target.targetSessionAttrs === 'read-write' && (await readOnly(client))) {
          faults.push(`${host.host}:${host.port} is read-only`);
          continue;
        }
        this.known = host;
        return host;
      } catch (err) {
        faults.push(`${host.host}:${host.port} ${(err as { code?: string }).code ?? (err as Error).message}`);
      } finally {
        await client.end().catch(() => undefined);
      }
    }
    throw new NoPrimaryError(faults.join('; '));
  }
}

/** libpq's read-write test: a hot standby, or a server whose sessions default to read-only. */
async function readOnly(client: pg.ClientBase): Promise<boolean> {
  const { rows } = await client.query<{ ro: string }>("SELECT current_setting('transaction_read_only') AS ro");
  return rows[0]?.ro === 'on';
}

/**
 * A pg Client class for the pool that connects to the selector's primary,
 * and checks it is still read-write once connected: a demoted or fenced old
 * primary that comes back as a standby is left, not written to.
 */
export function failoverClient(selector: PrimarySelector, target: MultiHostUrl): new () => pg.Client {
  return class FailoverClient extends pg.Client {
    override connect(): Promise<pg.Client>;
    override connect(callback: (err: Error | null) => void): void;
    override connect(callback?: (err: Error | null) => void): Promise<pg.Client> | void {
      const connected = this.connectToPrimary();
      if (!callback) return connected;
      connected.then(
        () => callback(null),
        (err: Error) => callback(err),
      );
    }

    private async connectToPrimary(): Promise<pg.Client> {
      const host = await selector.primary();
      // The pool built this client from the first host's URL; same credentials and database, another host.
      this.host = host.host;
      this.port = host.port;
      try {
        await super.connect();
      } catch (err) {
        selector.forget(host);
        throw err;
      }
      if (target.targetSessionAttrs === 'read-write') {
        // The pool listens for this client's 'error' only once connect() has answered: a server lost
        // during the check would otherwise raise an unhandled 'error' and end the process. The check's
        // query fails with the same error, which the pool's caller gets.
        const duringCheck = () => selector.forget(host);
        this.on('error', duringCheck);
        let readOnlyHost: boolean;
        try {
          readOnlyHost = await readOnly(this);
        } catch (err) {
          selector.forget(host);
          await this.end().catch(() => undefined);
          throw err;
        } finally {
          this.off('error', duringCheck);
        }
        if (readOnlyHost) {
          selector.forget(host);
          await this.end().catch(() => undefined);
          throw new NoPrimaryError(`${host.host}:${host.port} is read-only`);
        }
      }
      return this;
    }
  };
}
