import { relative, isAbsolute } from 'node:path';

/** One HTTP call as a person would type it with curl. */
export interface CurlCall {
  method: string;
  /** With the shell variable of the gateway's base URL, e.g. "$A/exchanges?recipient=…". */
  url: string;
  headers?: Array<[string, string]>;
  /** Form fields (-d name=value), for the token endpoint. */
  form?: Array<[string, string]>;
  /** A JSON body, shown inline. */
  json?: unknown;
  /** A body sent from a file (--data-binary @file). */
  file?: string;
  /** Where the answer is written (-o file). */
  output?: string;
  /** Captured into a shell variable: VAR=$(curl … | jq -r FILTER). */
  capture?: { variable: string; jq: string };
}

const PLAIN = /^[\w@%+=:,./-]+$/;

/**
 * Quote a shell word unless it is plain. A word naming $VARIABLES (upper case) is double-quoted so
 * they expand, and any other $ in it (as in /$ack) is escaped.
 */
export function shellWord(word: string): string {
  if (PLAIN.test(word)) return word;
  if (/\$[A-Z_]/.test(word) && !/["\\`!]/.test(word)) return `"${word.replace(/\$(?![A-Z_])/g, '\\$')}"`;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** A path as the reader would type it: relative to the working directory when below it. */
export function shownPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path;
}

export function curlCommand(call: CurlCall): string {
  const hasBody = call.form !== undefined || call.json !== undefined || call.file !== undefined;
  const method = call.method === 'GET' || (call.method === 'POST' && hasBody) ? '' : `-X ${call.method} `;
  const lines = [`curl -sS ${method}${shellWord(call.url)}`];
  for (const [name, value] of call.headers ?? []) lines.push(`-H ${shellWord(`${name}: ${value}`)}`);
  for (const [name, value] of call.form ?? []) lines.push(`-d ${shellWord(`${name}=${value}`)}`);
  if (call.json !== undefined) lines.push(`-d ${shellWord(JSON.stringify(call.json))}`);
  if (call.file) lines.push(`--data-binary @${shellWord(shownPath(call.file))}`);
  if (call.output) lines.push(`-o ${shellWord(shownPath(call.output))}`);
  const command = lines.join(' \\\n    ');
  return call.capture ? `${call.capture.variable}=$(${command} | jq -r ${shellWord(call.capture.jq)})` : command;
}

/**
 * The demo's output: numbered steps, each with the commands that do it (runnable by hand against the
 * same gateways) and what came back.
 */
export class StepsPrinter {
  private count = 0;
  private readonly write: (line: string) => void;
  constructor(write: (line: string) => void = (line) => process.stdout.write(line + '\n')) {
    this.write = write;
  }

  step(title: string): void {
    this.count += 1;
    this.write(`\n${this.count}. ${title}`);
  }

  command(text: string): void {
    this.write(`   $ ${text.replaceAll('\n', '\n   ')}`);
  }

  curl(call: CurlCall): void {
    this.command(curlCommand(call));
  }

  /** What happened, indented under the step. */
  info(text: string): void {
    for (const line of text.split('\n')) this.write(`     ${line}`);
  }

  /** A line outside any step (headings, the summary). */
  line(text = ''): void {
    this.write(text);
  }
}
