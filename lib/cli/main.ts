// The forge-rl command line: `forge-rl <command> [flags]`. bin/forge-rl.js runs main() and exits with
// the code it resolves to: 0 success, 1 a failure (preflight checks, a file that cannot be read),
// 2 a usage error (unknown flag, bad value), which names the flag.
import { CliUsageError, type CliIO, processIO } from './args.js';
import { gatewayCommand } from './gateway.js';
import { poolCommand } from './pool.js';
import { preflightCommand } from './preflight.js';

const COMMANDS: Record<string, { summary: string; run: (argv: readonly string[], io: CliIO) => Promise<number> }> = {
  gateway: { summary: 'serve agents (OpenAI / Anthropic protocols) and record every call token-exact', run: gatewayCommand },
  preflight: { summary: 'run an agent a few times through a gateway and report what would ruin training', run: preflightCommand },
  pool: { summary: 'inspect a data pool file (stats) and prune what training has used (prune)', run: (argv, io) => poolCommand(argv, io) },
};

export const MAIN_HELP = [
  'usage: forge-rl <command> [flags]',
  '',
  'commands:',
  ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(11)}${c.summary}`),
  `  ${'help'.padEnd(11)}this text; forge-rl help <command> (or <command> --help) for a command's flags`,
].join('\n');

export async function main(argv: readonly string[], io: CliIO = processIO): Promise<number> {
  const [name, ...rest] = argv;
  try {
    if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
      const topic = name === 'help' ? rest[0] : undefined;
      if (topic !== undefined && COMMANDS[topic]) return await COMMANDS[topic].run(['--help'], io);
      if (topic !== undefined) throw new CliUsageError(`help: unknown command ${JSON.stringify(topic)}`);
      (name === undefined ? io.err : io.out)(MAIN_HELP);
      return name === undefined ? 2 : 0;
    }
    const command = COMMANDS[name];
    if (command === undefined) throw new CliUsageError(`unknown command ${JSON.stringify(name)} (commands: ${Object.keys(COMMANDS).join(', ')}, help)`);
    return await command.run(rest, io);
  } catch (e) {
    if (e instanceof CliUsageError) {
      io.err(`forge-rl: ${e.message}`);
      return e.exitCode;
    }
    const err = e as Error & { code?: string };
    io.err(`forge-rl ${name}: ${err.code ? `${err.code}: ` : ''}${err.message}`);
    return 1;
  }
}
