/**
 * The `linkgate` command line: the command table, `--help` for each
 * command, argument parsing (node:util parseArgs) and exit codes. The
 * commands themselves are in commands.ts; linkgate.ts is the process entry.
 */
import type { Readable, Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import type { DestinationStream } from 'pino';
import * as v from 'valibot';
import type { Env } from '../config.ts';
import { ConfigError } from '../config.ts';
import { logCause } from '../db/errors.ts';
import { LinkgateError } from '../core/errors.ts';
import { ProviderLoadError } from '../registry.ts';

export const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

const EXIT_CODES_HELP = 'Exit codes: 0 success, 1 failure (configuration, database, provider), 2 usage error, 3 not found.';

/** A failure the command line reports as one line, with its exit code and a stable `code` for --json. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    readonly exitCode: ExitCode,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Everything a command may touch of the process: linkgate.ts passes the real one. */
export interface CliIo {
  env: Env;
  out(text: string): void;
  err(text: string): void;
  /** Where logs go (stderr). */
  log: DestinationStream;
  pid: number;
  isAlive(pid: number): boolean;
  now(): number;
  /** All of standard input, for the options that read a secret from it (never a prompt). */
  readStdin(): Promise<string>;
  /** The process's standard input and output as streams, for `linkgate mcp` (absent when commands run in-process). */
  stdio?: { input: Readable; output: Writable };
}

export interface ParsedArgs {
  positionals: string[];
  values: Record<string, string | boolean | undefined>;
  json: boolean;
}

interface OptionSpec {
  type: 'boolean' | 'string';
  /** Shown after the flag in the help, e.g. `URL`. */
  value?: string;
  help: string;
}

export interface Command {
  /** The words that name it: `['links', 'delete']`, `['tenants', 'keys', 'create']`. */
  path: string[];
  args: { name: string; help: string }[];
  /** Any number of further arguments after `args` (`NAME=value…`). */
  rest?: { name: string; help: string };
  options?: Record<string, OptionSpec>;
  /** Whether it prints data (and so takes --json). */
  json: boolean;
  summary: string;
  /** Paragraphs after the summary in its --help. */
  details?: string[];
  run(args: ParsedArgs, io: CliIo): Promise<ExitCode>;
}

const HELP_OPTION: OptionSpec = { type: 'boolean', help: 'show this help' };
const JSON_OPTION: OptionSpec = { type: 'boolean', help: 'print the result as JSON' };

function usageLine(command: Command): string {
  const args = [...command.args.map((a) => `<${a.name}>`), ...(command.rest ? [`[${command.rest.name}...]`] : [])];
  const options = Object.entries(command.options ?? {}).map(([name, o]) => `[--${name}${o.value ? ` ${o.value}` : ''}]`);
  return ['linkgate', ...command.path, ...args, ...options, ...(command.json ? ['[--json]'] : [])].join(' ');
}

function columns(rows: [string, string][], indent = 2): string[] {
  const width = Math.max(...rows.map(([left]) => left.length));
  return rows.map(([left, right]) => `${' '.repeat(indent)}${left.padEnd(width)}  ${right}`);
}

/** A paragraph in lines of at most `width` characters (a longer word stays whole). */
function wrap(paragraph: string, width = 78): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of paragraph.split(/\s+/)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines;
}

export function commandHelp(command: Command): string {
  const options: [string, string][] = Object.entries(command.options ?? {}).map(([name, o]) => [`--${name}${o.value ? ` ${o.value}` : ''}`, o.help]);
  if (command.json) options.push(['--json', JSON_OPTION.help]);
  options.push(['-h, --help', HELP_OPTION.help]);
  return [
    `Usage: ${usageLine(command)}`,
    '',
    command.summary,
    ...(command.details ?? []).flatMap((paragraph) => ['', ...wrap(paragraph)]),
    ...(command.args.length > 0 || command.rest
      ? ['', 'Arguments:', ...columns([...command.args.map((a): [string, string] => [`<${a.name}>`, a.help]), ...(command.rest ? [[`${command.rest.name}...`, command.rest.help] as [string, string]] : [])])]
      : []),
    '',
    'Options:',
    ...columns(options),
    '',
    EXIT_CODES_HELP,
    '',
  ].join('\n');
}

const startsWith = (path: readonly string[], prefix: readonly string[]) => prefix.every((word, i) => path[i] === word);

function groupHelp(group: readonly string[], commands: readonly Command[]): string {
  const members = commands.filter((c) => c.path.length > group.length && startsWith(c.path, group));
  return [
    `Usage: linkgate ${group.join(' ')} <command>`,
    '',
    'Commands:',
    ...columns(members.map((c) => [usageLine(c).replace(/^linkgate /, ''), c.summary])),
    '',
    `Run \`linkgate ${group.join(' ')} <command> --help\` for a command's arguments and options.`,
    '',
    EXIT_CODES_HELP,
    '',
  ].join('\n');
}

export function topHelp(commands: readonly Command[]): string {
  return [
    'linkgate: manage a Linkgate gateway from the command line.',
    '',
    'Usage: linkgate <command> [arguments] [options]',
    '',
    'Commands:',
    ...columns(commands.map((c) => [[...c.path, ...c.args.map((a) => `<${a.name}>`)].join(' '), c.summary])),
    '',
    'Every command reads the same configuration as the server, from the',
    'environment (see .env.example); outside production, missing secrets come',
    'from DATA_DIR/secrets.env as for the server. The embedded database (no',
    'DATABASE_URL) serves one process: while the server runs on the same',
    'DATA_DIR, providers, link-url, links, tenants and admin commands go',
    'through its API (tenants, admin and links delete need LINKGATE_ADMIN_KEYS),',
    'and keys rotate --reencrypt refuses until it stops. On PostgreSQL every',
    'command uses the database.',
    '',
    'Options on every command: -h, --help; --json on those that print data.',
    'Run `linkgate <command> --help` for a command\'s arguments and options.',
    '',
    EXIT_CODES_HELP,
    '',
  ].join('\n');
}

const usage = (message: string) => new CliError(EXIT.usage, 'usage', message);

/** Checks a positional argument or option value with a valibot schema; a bad one is a usage error. */
export function argument<T>(schema: v.GenericSchema<string, T>, value: string): T {
  const result = v.safeParse(schema, value);
  if (!result.success) throw usage(result.issues[0].message);
  return result.output;
}

type Resolved = { kind: 'help'; text: string; exitCode: ExitCode; toStderr: boolean; message?: string } | { kind: 'command'; command: Command; rest: string[] };

function resolve(argv: readonly string[], commands: readonly Command[]): Resolved {
  const [first] = argv;
  const top = (exitCode: ExitCode, message?: string): Resolved => ({ kind: 'help', text: topHelp(commands), exitCode, toStderr: exitCode !== EXIT.ok, ...(message ? { message } : {}) });
  if (first === undefined) return top(EXIT.usage, 'a command is required');
  if (first === '--help' || first === '-h' || first === 'help') return top(EXIT.ok);
  if (first.startsWith('-')) return top(EXIT.usage, `unknown option ${first} (options go after the command)`);
  // One word at a time: a command these words name, else the group they name so far (`tenants`, `tenants keys`).
  for (let depth = 1; ; depth += 1) {
    const words = argv.slice(0, depth);
    const command = commands.find((c) => c.path.length === depth && startsWith(c.path, words));
    if (command) return { kind: 'command', command, rest: argv.slice(depth) };
    if (!commands.some((c) => c.path.length > depth && startsWith(c.path, words))) {
      if (depth === 1) return top(EXIT.usage, `unknown command "${first}"`);
      return group(words.slice(0, -1), EXIT.usage, `unknown command "${words.join(' ')}"`);
    }
    const next = argv[depth];
    if (next === '--help' || next === '-h') return group(words, EXIT.ok);
    if (next === undefined || next.startsWith('-')) return group(words, EXIT.usage, `"${words.join(' ')}" needs a command`);
  }

  function group(words: readonly string[], exitCode: ExitCode, message?: string): Resolved {
    return { kind: 'help', text: groupHelp(words, commands), exitCode, toStderr: exitCode !== EXIT.ok, ...(message ? { message } : {}) };
  }
}

function parse(command: Command, rest: string[]): ParsedArgs & { help: boolean } {
  const options: Record<string, { type: 'boolean' | 'string'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  for (const [name, o] of Object.entries(command.options ?? {})) options[name] = { type: o.type };
  if (command.json) options.json = { type: 'boolean' };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: rest, options, allowPositionals: true, strict: true });
  } catch (error) {
    // parseArgs' messages name the option, never echo a value worth hiding; keep only their first sentence.
    throw usage(error instanceof Error ? error.message.split('. ')[0]!.replace(/\.$/, '') : 'bad arguments');
  }
  const { help, json, ...values } = parsed.values as Record<string, string | boolean | undefined>;
  return { positionals: parsed.positionals, values, json: json === true, help: help === true };
}

/** Runs one command line; resolves to the exit code. Output goes through `io`; nothing here exits the process. */
export async function runCli(argv: readonly string[], commands: readonly Command[], io: CliIo): Promise<ExitCode> {
  const resolved = resolve(argv, commands);
  if (resolved.kind === 'help') {
    if (resolved.message) io.err(`linkgate: ${resolved.message}\n\n`);
    (resolved.toStderr ? io.err : io.out)(resolved.text);
    return resolved.exitCode;
  }
  const { command } = resolved;
  let json = resolved.rest.includes('--json') && command.json;
  try {
    const args = parse(command, resolved.rest);
    json = args.json;
    if (args.help) {
      io.out(commandHelp(command));
      return EXIT.ok;
    }
    if (args.positionals.length < command.args.length || (!command.rest && args.positionals.length > command.args.length)) {
      const expected = command.args.map((a) => `<${a.name}>`).join(' ');
      throw usage(
        args.positionals.length < command.args.length
          ? `missing argument${command.args.length - args.positionals.length > 1 ? 's' : ''}: expected ${expected}`
          : `too many arguments: expected ${expected || 'none'}`,
      );
    }
    return await command.run(args, io);
  } catch (error) {
    const failure = asCliError(error);
    if (json) {
      io.err(`${JSON.stringify({ error: { code: failure.code, message: failure.message } })}\n`);
    } else {
      io.err(`linkgate ${command.path.join(' ')}: ${failure.message}\n`);
      if (failure.exitCode === EXIT.usage) io.err(`\n${commandHelp(command)}`);
    }
    return failure.exitCode;
  }
}

/** Input mistakes are usage errors; a missing link or provider is "not found"; the rest is a failure. */
const LINKGATE_EXIT: Partial<Record<string, ExitCode>> = {
  bad_request: EXIT.usage,
  return_to_not_allowed: EXIT.usage,
  not_linked: EXIT.notFound,
  unknown_provider: EXIT.notFound,
  provider_not_per_tenant: EXIT.usage,
  tenant_not_found: EXIT.notFound,
  not_found: EXIT.notFound,
};

/** An error the gateway answered (`{ "error": { "code", "message" } }`), with the exit code the same error has on the database directly. */
export function answeredError(code: string, message: string): CliError {
  return new CliError(LINKGATE_EXIT[code] ?? EXIT.failure, code, message);
}

function asCliError(error: unknown): CliError {
  if (error instanceof CliError) return error;
  if (error instanceof LinkgateError) return new CliError(LINKGATE_EXIT[error.code] ?? EXIT.failure, error.code, error.message);
  if (error instanceof ConfigError || error instanceof ProviderLoadError) {
    return new CliError(EXIT.failure, 'configuration_error', `configuration error: ${error.message}`);
  }
  // A database error's summary only: Drizzle's own message carries the query's parameters.
  return new CliError(EXIT.failure, 'failed', logCause(error).message);
}
