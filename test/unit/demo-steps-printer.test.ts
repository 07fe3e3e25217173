import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { curlCommand, shellWord, StepsPrinter } from '../../src/demo/steps-printer.ts';

/** What a POSIX shell makes of the word, with A and TOKEN set: the printed commands must mean what they say. */
const shellSees = (word: string) =>
  execFileSync('sh', ['-c', `printf %s ${word}`], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, A: 'http://gw', TOKEN: 't0k' },
  });

describe('gateway demo: the steps as commands a person can run', () => {
  it('quotes shell words so that only the $VARIABLES it names expand', () => {
    expect(shellWord('grant_type=client_credentials')).toBe('grant_type=client_credentials');
    expect(shellSees(shellWord('$A/exchanges?recipient=b'))).toBe('http://gw/exchanges?recipient=b');
    expect(shellSees(shellWord('$A/inbox/messages/1/$ack'))).toBe('http://gw/inbox/messages/1/$ack');
    expect(shellSees(shellWord('Authorization: Bearer $TOKEN'))).toBe('Authorization: Bearer t0k');
    expect(shellSees(shellWord('scope=system/*.read'))).toBe('scope=system/*.read');
    const json = JSON.stringify({ id: "it's", url: '$A' });
    expect(shellSees(shellWord(json))).toBe(json);
  });

  it('prints a call as curl: method and URL first, then headers, body and output', () => {
    expect(
      curlCommand({
        method: 'POST',
        url: '$A/exchanges?recipient=b',
        headers: [['Authorization', 'Bearer $TOKEN']],
        file: '/data/x.json',
      }),
    ).toBe(
      'curl -sS "$A/exchanges?recipient=b" \\\n    -H "Authorization: Bearer $TOKEN" \\\n    --data-binary @/data/x.json',
    );
    expect(curlCommand({ method: 'POST', url: '$A/audit/checkpoint' })).toBe('curl -sS -X POST "$A/audit/checkpoint"');
    expect(
      curlCommand({
        method: 'POST',
        url: '$A/auth/token',
        form: [['scope', 'system/*.read']],
        capture: { variable: 'TOKEN', jq: '.access_token' },
      }),
    ).toBe('TOKEN=$(curl -sS "$A/auth/token" \\\n    -d \'scope=system/*.read\' | jq -r .access_token)');
  });

  it('numbers the steps and indents what belongs to them', () => {
    const lines: string[] = [];
    const p = new StepsPrinter((l) => lines.push(l));
    p.step('Start');
    p.command('gateway start');
    p.info('ready');
    p.step('Send');
    expect(lines).toEqual(['\n1. Start', '   $ gateway start', '     ready', '\n2. Send']);
  });
});
