import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { schema } from '../config.ts';
import type { GatewayPorts } from './ports.ts';

/** One demo organisation's gateway: a `gateway start` child process with its own DATA_DIR. */
export interface DemoGateway {
  /** "A" or "B", as the demo's output names it. */
  label: string;
  /** ORG_ID: its id in the other gateway's partner directory. */
  org: string;
  url: string;
  dataDir: string;
  logFile: string;
  /** The environment its admin commands need (same DATA_DIR and embedded PostgreSQL port). */
  env: NodeJS.ProcessEnv;
  /** Resolves once /ready answers 200; rejects if the gateway exits first or takes too long. */
  ready(): Promise<void>;
  /** Graceful stop (SIGTERM: requests, jobs, HSM, embedded PostgreSQL); resolves with the exit code. */
  stop(): Promise<number | null>;
}

export interface GatewaySpec {
  label: string;
  org: string;
  dataDir: string;
  ports: GatewayPorts;
}

const READY_TIMEOUT_MS = 180_000;
const STOP_TIMEOUT_MS = 60_000;

/**
 * The caller's environment without any gateway setting (and without a SoftHSM config, which would
 * win over the token in DATA_DIR): each demo gateway is configured by the demo alone.
 */
function cleanEnvironment(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const field of Object.values(schema)) delete env[field.env];
  delete env.SOFTHSM2_CONF;
  return env;
}

export function gatewayEnv(spec: GatewaySpec): NodeJS.ProcessEnv {
  return {
    ...cleanEnvironment(),
    DATA_DIR: spec.dataDir,
    HOST: '127.0.0.1',
    PORT: String(spec.ports.http),
    ORG_ID: spec.org,
    LOG_LEVEL: 'info',
    // A first attempt that meets a partner still starting is retried within a second, not ten.
    DELIVERY_RETRY_BASE: '1s',
  };
}

function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Start `gateway start` for one organisation. The child runs in its own process group, so a Ctrl-C
 * in the terminal reaches the demo only, and the demo stops each gateway exactly once (a second
 * signal would make it exit at once instead of gracefully).
 */
export function spawnGateway(entry: string, spec: GatewaySpec): DemoGateway {
  mkdirSync(spec.dataDir, { recursive: true });
  const logFile = join(spec.dataDir, 'gateway.log');
  const env = gatewayEnv(spec);
  const log = openSync(logFile, 'a');
  const child = spawn(process.execPath, [entry, 'start'], { env, detached: true, stdio: ['ignore', log, log] });
  closeSync(log);
  const exited = exitOf(child);
  const running = () => child.exitCode === null && child.signalCode === null;
  const url = `http://127.0.0.1:${spec.ports.http}`;
  // Never leave a gateway behind if the demo itself ends abruptly.
  process.once('exit', () => {
    if (running()) child.kill('SIGKILL');
  });

  const ready = (async () => {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (!running())
        throw new Error(`gateway ${spec.label} exited while starting; its log ${logFile} ends:\n${tail(logFile)}`);
      const up = await fetch(`${url}/ready`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (up) return;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`gateway ${spec.label} was not ready within ${READY_TIMEOUT_MS / 1000} s; see ${logFile}`);
  })();
  ready.catch(() => undefined); // awaited by the caller; a stop during start-up must not see it unhandled

  return {
    label: spec.label,
    org: spec.org,
    url,
    dataDir: spec.dataDir,
    logFile,
    env,
    ready: () => ready,
    stop: async () => {
      // Its signal handler is installed once it listens: a SIGTERM before that would kill it mid-start.
      await ready.catch(() => undefined);
      if (running()) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
