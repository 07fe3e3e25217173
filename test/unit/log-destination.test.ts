import { closeSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { terminalLogStream } from '../../src/cli/log-destination.ts';

describe('log destination', () => {
  it('leaves JSON lines when the output is not a terminal', () => {
    expect(terminalLogStream({ fd: 1, isTTY: false })).toBeUndefined();
  });

  it('formats lines for a person on a terminal, after redaction', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'gw-log-')), 'out');
    const fd = openSync(file, 'w');
    const stream = terminalLogStream({ fd, isTTY: true });
    expect(stream).toBeDefined();
    const log = pino({ redact: ['req.headers.authorization'] }, stream as pino.DestinationStream);
    log.info({ req: { headers: { authorization: 'Bearer secret-token' } } }, 'gateway ready');
    log.flush();
    closeSync(fd);
    const text = readFileSync(file, 'utf8');
    expect(text).toContain('INFO');
    expect(text).toContain('gateway ready');
    expect(text).not.toContain('{"level"');
    expect(text).not.toContain('secret-token');
  });
});
