/**
 * The embedded database serves one process: a command that opens it must
 * not open it while the server holds DATA_DIR (it goes through the server,
 * or refuses), nor while another process does, and works once it has stopped.
 * Always on PGlite (a PostgreSQL deployment has no lock to respect).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isProcessAlive, lockDataDir } from '../../src/db/lock.ts';
import { cliEnv, ROOT, runCli } from '../helpers/cli.ts';

/** How many migrations drizzle/ holds (its journal), so adding one does not break these tests. */
const MIGRATIONS = (JSON.parse(readFileSync(new URL('../../drizzle/meta/_journal.json', import.meta.url), 'utf8')) as { entries: unknown[] }).entries.length;

let dataDir: string;
let env: Record<string, string>;
let server: ChildProcess | undefined;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const listener = createServer().listen(0, '127.0.0.1', () => {
      const { port } = listener.address() as { port: number };
      listener.close(() => resolve(port));
    });
  });
}

/** The pids in the lock files of DATA_DIR (whatever the lock files are called). */
function lockHolders(): string[] {
  return readdirSync(dataDir)
    .filter((name) => /^linkgate\b.*\.lock$/.test(name))
    .map((name) => readFileSync(join(dataDir, name), 'utf8').trim());
}

beforeAll(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'linkgate-cli-lock-'));
  env = cliEnv(dataDir, { ANILIST_CLIENT_ID: '12345', ANILIST_CLIENT_SECRET: 'anilist-client-secret-0123456789' });
});
afterAll(() => {
  server?.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

describe('the DATA_DIR lock', () => {
  it('while the server runs, commands go through it or refuse (keys rotate --reencrypt), the server keeps its lock, and all work on the database once it stops', async () => {
    const port = await freePort();
    // The server exactly as `npm start` runs it, on the same DATA_DIR.
    server = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd: ROOT, env: { PATH: process.env.PATH, ...env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => server!.on('exit', resolve));
    let ready = false;
    for (let i = 0; i < 300 && !ready; i += 1) {
      ready = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status === 200, () => false);
      if (!ready) await new Promise((r) => setTimeout(r, 100));
    }
    expect(ready).toBe(true);
    const holder = String(server.pid);
    expect(lockHolders()).toEqual([holder]);

    // Commands with an HTTP equivalent go through the server (test/cli/live.test.ts has the detail); the rest refuse.
    const list = await runCli(['links', 'list', 'u1'], env);
    expect(list).toEqual({ code: 0, stdout: 'this user has no links\n', stderr: '' });
    const refused = await runCli(['keys', 'rotate', '--reencrypt', '--json'], env);
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.stderr)).toMatchObject({ error: { code: 'data_dir_in_use' } });
    // The server kept its lock and its database.
    expect(lockHolders()).toEqual([holder]);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);

    expect((await runCli(['providers'], env)).code).toBe(0);
    const url = await runCli(['link-url', 'u1', 'anilist'], env);
    expect(url.code).toBe(0);
    expect(url.stdout).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/oauth\/anilist\/start\?context=/);

    server.kill('SIGTERM');
    expect(await exited).toBe(0);
    server = undefined;
    // The same database the server migrated at start-up.
    const migrate = await runCli(['migrate', '--json'], env);
    expect(migrate.code).toBe(0);
    expect(JSON.parse(migrate.stdout)).toEqual({ database: 'pglite', applied: 0, total: MIGRATIONS });
    expect(lockHolders()).toEqual([]);
  }, 120_000);

  it('commands on the embedded database refuse while another process that is not a gateway holds DATA_DIR', async () => {
    const unlock = lockDataDir(dataDir, process.pid, isProcessAlive);
    try {
      const list = await runCli(['links', 'list', 'u1'], env);
      expect(list.code).toBe(1);
      expect(list.stdout).toBe('');
      expect(list.stderr).toBe(
        `linkgate links list: DATA_DIR ${dataDir} is in use by another Linkgate process (pid ${process.pid}). ` +
          'The embedded database serves one process; set DATABASE_URL to PostgreSQL to run several. Try again once it has finished or, if it is a server still starting, once it is ready (then the command goes through it).\n',
      );
      for (const args of [['migrate'], ['links', 'show', 'u1', 'anilist'], ['links', 'delete', 'u1', 'anilist'], ['tenants', 'list']]) {
        const refused = await runCli([...args, '--json'], env);
        expect(refused.code, args.join(' ')).toBe(1);
        expect(JSON.parse(refused.stderr), args.join(' ')).toMatchObject({ error: { code: 'data_dir_in_use' } });
      }
    } finally {
      unlock();
    }
  });

  it('a lock left by a process that no longer runs is taken over', async () => {
    const gone = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => gone.on('exit', resolve));
    writeFileSync(join(dataDir, 'linkgate.lock'), String(gone.pid));
    const list = await runCli(['links', 'list', 'u1', '--json'], env);
    expect(list.stderr).toBe('');
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout)).toEqual({ links: [] });
    expect(lockHolders()).toEqual([]);
  });
});
