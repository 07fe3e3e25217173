import { join } from 'node:path';
import { ConfigError } from '../src/config.ts';
import { HsmError } from '../hsm/errors.ts';
import { GatewayError } from '../src/errors.ts';
import { UsageError, print, type Command } from '../src/cli/command.ts';
import { migrateCommand } from '../src/cli/migrate.ts';
import { keysCommand } from '../src/cli/keys.ts';
import { clientsCommand, tlsCommand } from '../src/cli/clients.ts';
import { partnersCommand } from '../src/cli/partners.ts';
import { deliveriesCommand } from '../src/cli/deliveries.ts';
import { auditCommand } from '../src/cli/audit.ts';
import { retentionCommand } from '../src/cli/retention.ts';
import { workerCommand } from '../src/cli/worker.ts';
import { demoCommand } from '../src/cli/demo.ts';
import { serveCommand, startCommand } from '../plugins/server.ts';

// bin/ is the composition root: it may import every layer; nothing imports it.
const commands: Command[] = [
  startCommand,
  serveCommand,
  workerCommand,
  migrateCommand,
  keysCommand,
  partnersCommand,
  deliveriesCommand,
  retentionCommand,
  clientsCommand,
  tlsCommand,
  auditCommand,
  // The demo runs this same entry point once per organisation, and sends the files in demo/.
  demoCommand(join(import.meta.dirname, 'gateway.js'), join(import.meta.dirname, '..', 'demo')),
];

function help(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return `gateway: FHIR secure record exchange gateway

Usage: gateway <command> [options]   (gateway <command> --help for details)

Commands:
${commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Configuration comes from environment variables; see README.md.`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    print(help());
    return name ? 0 : 2;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    process.stderr.write(`gateway: unknown command "${name}"\n\n${help()}\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    print(command.usage);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`gateway ${name}: ${err.message}\n\n${command.usage}\n`);
      return 2;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`gateway: ${err.message}\n`);
      return 78; // EX_CONFIG
    }
    if (err instanceof GatewayError && err.status < 500) {
      // A refusal (unknown id, wrong state, bad value): say why; 3 = not found, so scripts can tell.
      process.stderr.write(`gateway ${name}: ${err.message}\n`);
      return err.code === 'NOT_FOUND' ? 3 : 1;
    }
    if (err instanceof HsmError) {
      process.stderr.write(`gateway: HSM error ${err.code}: ${err.message}\n`);
      return 69; // EX_UNAVAILABLE
    }
    process.stderr.write(`gateway: ${(err as Error).message}\n`);
    return 1;
  }
}

// Exit explicitly: a failed start must not linger on open handles.
process.exit(await main(process.argv.slice(2)));
