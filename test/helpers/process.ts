import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startArguments } from '../../scripts/start-arguments.ts';
import { createTestDatabase } from './database.ts';
import { TEST_SECRETS } from './gateway.ts';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface GatewayProcess {
  child: ChildProcess;
  base: string;
  port: number;
  /** Its working directory; with PGlite the database is in `data/pgdata` below it. */
  dataDir: string;
  /** On PostgreSQL, the database of its own it runs on. */
  database: Awaited<ReturnType<typeof createTestDatabase>> | undefined;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  exited: Promise<number | null>;
  /** Kills it if it still runs, drops its database and directory. */
  cleanup(): Promise<void>;
}

export interface GatewayProcessOptions {
  /**
   * Runs on an existing PostgreSQL database (`DATABASE_URL` in `env`), which
   * is neither created nor dropped here: a second start on the same data.
   */
  databaseUrl?: string;
  /** Called with its working directory (empty) and database before it starts: write a `.env`, lay out tables. */
  prepare?: (where: { dir: string; databaseUrl: string | undefined }) => Promise<void> | void;
  /** Its environment is PATH, HOME and `env` only: none of the test secrets, NODE_ENV or DATA_DIR. */
  bare?: boolean;
  /** On PGlite even when TEST_DATABASE_URL is set: for what only the embedded database can show. */
  embedded?: boolean;
  /** The working directory of an earlier process (its `dataDir`): a restart on its data. */
  dataDir?: string;
  /**
   * As `npm run start:prod` runs it, without tsx: the build in `<compiled>/dist`
   * (`npm run build -- <compiled>/dist`), `compiled` being a copy of the package.
   */
  compiled?: string;
}

/**
 * The node arguments of an npm script that starts the gateway (`start`,
 * `start:prod`), its entry made absolute in `root` (the process runs in its
 * own directory), so tests start it exactly as the script does. `start` loads
 * tsx as a loader inside the one process; the tsx CLI would be a parent of its
 * own that gives the gateway 30 ms to acknowledge a relayed SIGTERM before it
 * kills it and exits 143, which a loaded machine sometimes misses.
 */
export function scriptArguments(script: 'start' | 'start:prod', root = ROOT): string[] {
  const args = startArguments(script);
  // `--import tsx` resolves from the working directory, which is not this package.
  return args.map((arg, i) => (args[i - 1] === '--import' ? import.meta.resolve(arg) : arg.endsWith('.js') || arg.endsWith('.ts') ? join(root, arg) : arg));
}

/** `npm run start:prod`'s node arguments (see scriptArguments). */
export function startProdArguments(root = ROOT): string[] {
  return scriptArguments('start:prod', root);
}

/**
 * The real gateway process (`src/server.ts`) with the test secrets, a port the
 * kernel picks (read from its "listening" log line) and a database of its own:
 * a PostgreSQL database when TEST_DATABASE_URL is set, else PGlite in a fresh
 * directory. Resolves once `/readyz` answers 200.
 */
export async function startGatewayProcess(env: Record<string, string>, options: GatewayProcessOptions = {}): Promise<GatewayProcess> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'linkgate-process-'));
  const database = options.databaseUrl === undefined && !options.embedded && process.env.TEST_DATABASE_URL ? await createTestDatabase() : undefined;
  const databaseUrl = options.databaseUrl ?? database?.url;
  await options.prepare?.({ dir: dataDir, databaseUrl });
  let output = '';
  const args = options.compiled ? startProdArguments(options.compiled) : scriptArguments('start');
  const child = spawn(process.execPath, args, {
    cwd: dataDir,
    env: options.bare
      ? { PATH: process.env.PATH, HOME: process.env.HOME, ...env }
      : {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          NODE_ENV: 'test',
          PORT: '0',
          LOG_LEVEL: 'info',
          ...TEST_SECRETS,
          ...(databaseUrl ? { DATABASE_URL: databaseUrl } : { DATA_DIR: join(dataDir, 'data') }),
          ...env,
        },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const cleanup = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    await database?.close();
    rmSync(dataDir, { recursive: true, force: true });
  };
  for (let i = 0; ; i += 1) {
    if (child.exitCode !== null || i > 400) {
      await cleanup();
      throw new Error(`gateway did not start: ${output}`);
    }
    // A JSON line (test, production), or a pretty one (development: a bare environment has no NODE_ENV).
    const listening = /"url":"http:\/\/127\.0\.0\.1:(\d+)".*"msg":"linkgate listening"|linkgate listening \{"url":"http:\/\/127\.0\.0\.1:(\d+)"/.exec(output);
    if (listening) {
      const port = Number(listening[1] ?? listening[2]);
      const base = `http://127.0.0.1:${port}`;
      if ((await fetch(`${base}/readyz`).catch(() => undefined))?.status === 200) {
        return { child, base, port, dataDir, database, output: () => output, exited, cleanup };
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
