import { userInfo } from 'node:os';
import { parseArgs, type ParseArgsConfig } from 'node:util';

export interface Command {
  name: string;
  summary: string;
  /** Full help text shown by `gateway <name> --help`. */
  usage: string;
  run(args: string[]): Promise<number>;
}

export class UsageError extends Error {}

/** CLI actions are audited as the person who ran them: the operating-system user, as `cli:NAME`. */
export function cliOperator(): { type: 'user'; id: string } {
  let name = 'unknown';
  try {
    name = userInfo().username; // may throw in containers without a passwd entry
  } catch {
    /* keep 'unknown' */
  }
  return { type: 'user', id: `cli:${name}` };
}

/** parseArgs with --help handled and unknown flags reported as usage errors. */
export function parse<T extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: T,
  allowPositionals = false,
) {
  try {
    return parseArgs({
      args,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals,
      strict: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export function print(line = ''): void {
  process.stdout.write(line + '\n');
}

/** Fixed-width text table for terminals. */
export function table(rows: Array<Record<string, string>>, columns: string[]): string {
  const widths = columns.map((name) => ({
    name,
    width: Math.max(name.length, ...rows.map((r) => (r[name] ?? '').length)),
  }));
  const line = (cell: (column: string) => string) =>
    widths
      .map(({ name, width }) => cell(name).padEnd(width))
      .join('  ')
      .trimEnd();
  return [line((c) => c.toUpperCase()), ...rows.map((r) => line((c) => r[c] ?? ''))].join('\n');
}
