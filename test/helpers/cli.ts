import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { openDatabase, pgliteTemplate, type Database } from '../../src/db/client.ts';
import { seedDataDir } from '../../src/db/pglite.ts';
import { isProcessAlive } from '../../src/db/lock.ts';
import { TEST_SECRETS } from './gateway.ts';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = join(ROOT, 'bin/linkgate.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the real `linkgate` command (bin/linkgate.js, a new Node process)
 * with only the given environment (and PATH), as an operator would.
 */
export function runCli(args: readonly string[], env: Record<string, string | undefined> = {}, options: { cwd?: string; command?: string[]; /** Written to its standard input (closed otherwise). */ input?: string } = {}): Promise<CliResult> {
  const [file, ...pre] = options.command ?? [process.execPath, BIN];
  const child = spawn(file!, [...pre, ...args], {
    cwd: options.cwd ?? ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (options.input !== undefined) child.stdin!.end(options.input);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Runs the `linkgate` commands in this process (src/cli/cli.ts's `runCli`
 * with the real command table), with only the given environment: the same
 * code as bin/linkgate.js without starting Node and tsx for every command,
 * for tests that run many. What they print and the exit code are the same.
 */
export async function runCliHere(args: readonly string[], env: Record<string, string | undefined> = {}, options: { input?: string } = {}): Promise<CliResult> {
  const [{ runCli: run }, { COMMANDS }] = await Promise.all([import('../../src/cli/cli.ts'), import('../../src/cli/commands.ts')]);
  let stdout = '';
  let stderr = '';
  const code = await run(args, COMMANDS, {
    env: Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined)),
    out: (text) => (stdout += text),
    err: (text) => (stderr += text),
    log: { write: (text: string) => (stderr += text) },
    pid: process.pid,
    isAlive: isProcessAlive,
    now: Date.now,
    readStdin: async () => options.input ?? '',
  });
  return { code, stdout, stderr };
}

/** The configuration every CLI test shares: the test secrets, development mode, a DATA_DIR of its own. */
export function cliEnv(dataDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return { NODE_ENV: 'test', DATA_DIR: dataDir, ...TEST_SECRETS, ...extra };
}

export interface CliDatabase {
  /** DATA_DIR, and DATABASE_URL on PostgreSQL: what the command needs to find the database. */
  env: Record<string, string>;
  dataDir: string;
  kind: 'postgres' | 'pglite';
  /**
   * Opens the database in the test process for `run`. The embedded database
   * serves one process: it is closed again before any command runs on it.
   */
  use<T>(run: (database: Database) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * An empty (not migrated) database for the command line: a new PostgreSQL
 * database when TEST_DATABASE_URL is set, else an embedded one in a fresh
 * DATA_DIR, where the server would keep it, copied from the plain template
 * (a new data directory would otherwise start from the migrated one).
 */
export async function createCliDatabase(): Promise<CliDatabase> {
  const dataDir = mkdtempSync(join(tmpdir(), 'linkgate-cli-'));
  const base = process.env.TEST_DATABASE_URL;
  if (!base) {
    seedDataDir(join(dataDir, 'pgdata'), (await pgliteTemplate())!);
    return {
      env: { DATA_DIR: dataDir },
      dataDir,
      kind: 'pglite',
      async use(run) {
        const database = await openDatabase({ dataDir: join(dataDir, 'pgdata') });
        try {
          return await run(database);
        } finally {
          await database.close();
        }
      },
      async close() {
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  }
  const name = `linkgate_test_${randomBytes(6).toString('hex')}`;
  const admin = postgres(base, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const url = new URL(base);
  url.pathname = `/${name}`;
  let open: Database | undefined;
  return {
    env: { DATA_DIR: dataDir, DATABASE_URL: url.href },
    dataDir,
    kind: 'postgres',
    async use(run) {
      open ??= await openDatabase({ url: url.href, maxConnections: 5 });
      return run(open);
    },
    async close() {
      await open?.close();
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
