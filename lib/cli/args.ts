// Flag parsing for the forge-rl commands: node:util parseArgs driven by one table per command, which
// also writes the --help text, so the flags a command accepts and the flags its help lists are the
// same list. Every usage error is a CliUsageError naming the flag (the launcher exits with code 2).
import { parseArgs } from 'node:util';

/** Wrong flags or values on the command line: exit code 2, the message names the flag. */
export class CliUsageError extends Error {
  readonly code = 'FORGE_CLI_USAGE';
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'CliUsageError';
  }
}

export interface FlagSpec {
  type: 'string' | 'boolean';
  /** Placeholder of the value in the help, e.g. "<n>". */
  value?: string;
  short?: string;
  /** A string flag that may be given several times (its value is then a string[]). */
  multiple?: boolean;
  help: string;
}

export type FlagTable = Record<string, FlagSpec>;
export type FlagValues = Record<string, string | boolean | string[] | undefined>;

/** Where a command writes: lines to stdout (results) and stderr (progress, warnings, errors). */
export interface CliIO {
  out(line: string): void;
  err(line: string): void;
}

export const processIO: CliIO = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/**
 * Parses `argv` against `flags` (plus --help). Without `positionals`, any positional is an error.
 * The message of an unknown or malformed flag names it and the command.
 */
export function parseFlags(
  command: string,
  argv: readonly string[],
  flags: FlagTable,
  { positionals = false }: { positionals?: boolean } = {},
): { values: FlagValues; positionals: string[] } {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = { help: { type: 'boolean', short: 'h' } };
  for (const [name, spec] of Object.entries(flags))
    options[name] = { type: spec.type, ...(spec.short ? { short: spec.short } : {}), ...(spec.multiple ? { multiple: true } : {}) };
  try {
    const parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: positionals });
    return { values: parsed.values as FlagValues, positionals: parsed.positionals };
  } catch (e) {
    const err = e as Error & { code?: string };
    const quoted = /'(-[^' ]+)/.exec(err.message)?.[1];
    switch (err.code) {
      case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
        throw new CliUsageError(`${command}: unknown flag ${quoted ?? err.message} (see forge-rl ${command} --help)`);
      case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
        const flag = /--([\w-]+)/.exec(err.message)?.[0] ?? quoted ?? '';
        const spec = flags[flag.slice(2)];
        throw new CliUsageError(spec?.type === 'boolean'
          ? `${command}: ${flag} takes no value`
          : `${command}: ${flag} needs a value ${spec?.value ?? ''}`.trimEnd());
      }
      case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
        throw new CliUsageError(`${command}: unexpected argument ${/'([^']*)'/.exec(err.message)?.[1] ?? ''} (see forge-rl ${command} --help)`);
      default:
        throw new CliUsageError(`${command}: ${err.message}`);
    }
  }
}

/** An integer flag in [min, max]; `fallback` when absent. */
export function intFlag(values: FlagValues, name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const n = typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new CliUsageError(`--${name}: expected an integer${max === Number.MAX_SAFE_INTEGER ? ` >= ${min}` : ` in [${min}, ${max}]`}, got ${JSON.stringify(raw)}`);
  return n;
}

/** A positive number of seconds, returned in milliseconds. */
export function secondsFlag(values: FlagValues, name: string, fallbackSeconds: number): number {
  const raw = values[name];
  if (raw === undefined) return Math.round(fallbackSeconds * 1000);
  const s = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
  if (!Number.isFinite(s) || s <= 0) throw new CliUsageError(`--${name}: expected a positive number of seconds, got ${JSON.stringify(raw)}`);
  return Math.max(1, Math.round(s * 1000));
}

export function stringFlag(values: FlagValues, name: string): string | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || raw.length === 0) throw new CliUsageError(`--${name}: expected a non-empty value`);
  return raw;
}

/** The --help text: usage, a description, then one line per flag. */
export function helpText(usage: string, description: string, flags: FlagTable): string {
  const rows = Object.entries(flags).map(([name, spec]) => [
    `${spec.short ? `-${spec.short}, ` : ''}--${name}${spec.value ? ` ${spec.value}` : ''}`, spec.help,
  ]);
  rows.push(['-h, --help', 'show this help']);
  const width = Math.max(...rows.map(([f]) => f.length)) + 2;
  return [`usage: ${usage}`, '', description, '', 'flags:', ...rows.map(([f, h]) => `  ${f.padEnd(width)}${h}`)].join('\n');
}
