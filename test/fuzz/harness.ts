import fc from 'fast-check';
import { expect } from 'vitest';
import { GatewayError } from '../../src/errors.ts';

/**
 * The one way the fuzz properties run. The seed is random on every run (what
 * fast-check does by default); FC_SEED (and FC_PATH, to go straight to the
 * shrunk case) replays a failure. A failure's first line names both, so the
 * summary reporter's one-line view of a failed test is enough to replay it.
 */
export function replayParameters(): { seed?: number; path?: string } {
  const seed = process.env.FC_SEED;
  if (seed === undefined || seed === '') return {};
  if (!/^-?\d+$/.test(seed)) throw new Error(`FC_SEED must be an integer, not ${seed}`);
  return { seed: Number(seed), ...(process.env.FC_PATH ? { path: process.env.FC_PATH } : {}) };
}

/** FC_RUNS_SCALE multiplies every property's run count (e.g. 10 for a long local hunt). */
function scaled(numRuns: number): number {
  const scale = Number(process.env.FC_RUNS_SCALE ?? '1');
  return Math.max(1, Math.round(numRuns * (Number.isFinite(scale) && scale > 0 ? scale : 1)));
}

export interface FuzzOptions<T> {
  numRuns: number;
  /** Inputs that once failed (or that another engineer's fix must make pass): always run first. */
  examples?: T[];
}

function failure<T>(details: fc.RunDetails<[T]>): Error {
  const replay = `FC_SEED=${details.seed} FC_PATH=${details.counterexamplePath ?? ''}`;
  const report = fc.defaultReportMessage(details) ?? 'property failed';
  return new Error(`fuzz property failed (replay: ${replay})\n${report}`, { cause: details.errorInstance });
}

/** Check a synchronous property; throws with the replay line on failure. */
export function fuzz<T>(arb: fc.Arbitrary<T>, predicate: (value: T) => void, options: FuzzOptions<T>): void {
  const details = fc.check(fc.property(arb, predicate), {
    numRuns: scaled(options.numRuns),
    examples: (options.examples ?? []).map((e) => [e] as [T]),
    ...replayParameters(),
  });
  if (details.failed) throw failure(details);
}

/** Check an asynchronous property; throws with the replay line on failure. */
export async function fuzzAsync<T>(
  arb: fc.Arbitrary<T>,
  predicate: (value: T) => Promise<void>,
  options: FuzzOptions<T>,
): Promise<void> {
  const details = await fc.check(fc.asyncProperty(arb, predicate), {
    numRuns: scaled(options.numRuns),
    examples: (options.examples ?? []).map((e) => [e] as [T]),
    ...replayParameters(),
  });
  if (details.failed) throw failure(details);
}

/**
 * The unit-level property: a reader returns a value or refuses with a
 * GatewayError whose status is 4xx. A TypeError, a RangeError or a 5xx code
 * is a bug: it reaches a client as a 500 and no refusal is audited.
 */
export function refusedWith4xx(err: unknown): GatewayError {
  if (!(err instanceof GatewayError)) throw new Error(`not a GatewayError: ${String(err)}`, { cause: err });
  if (err.status < 400 || err.status >= 500) throw new Error(`${err.code} is ${err.status}, not a 4xx`, { cause: err });
  return err;
}

export function returnsOr4xx<T>(read: () => T): T | GatewayError {
  try {
    return read();
  } catch (err) {
    return refusedWith4xx(err);
  }
}

export async function resolvesOr4xx<T>(read: () => Promise<T>): Promise<T | GatewayError> {
  try {
    return await read();
  } catch (err) {
    return refusedWith4xx(err);
  }
}

/** The HTTP-level property: a success or a 4xx, never a 5xx. */
export function expectNot5xx(res: { statusCode: number; body: string }, what: string): void {
  expect(res.statusCode, `${what}: HTTP ${res.statusCode} ${res.body.slice(0, 300)}`).toBeLessThan(500);
}

/** A 4xx from a FHIR route is an OperationOutcome. */
export function expectOutcomeIf4xx(res: { statusCode: number; body: string }, what: string): void {
  expectNot5xx(res, what);
  if (res.statusCode >= 400)
    expect(JSON.parse(res.body).resourceType, `${what}: ${res.body.slice(0, 200)}`).toBe('OperationOutcome');
}
