import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createKeyring } from '../src/core/crypto.ts';
import { createLinkStore } from '../src/core/links.ts';
import { openDatabase } from '../src/db/client.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSX = join(ROOT, 'node_modules/.bin/tsx');
const cwd = mkdtempSync(join(tmpdir(), 'linkgate-server-'));
afterAll(() => rmSync(cwd, { recursive: true, force: true }));

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

interface Running {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** Starts the gateway as `npm start` does, with no configuration but a port, in a fresh working directory. */
function start(port: number): Running {
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, PORT: String(port) };
  const child = spawn(TSX, [join(ROOT, 'src/server.ts')], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

async function waitReady(port: number, running: Running): Promise<Response> {
  for (let i = 0; i < 200; i += 1) {
    if (running.child.exitCode !== null) throw new Error(`gateway exited: ${running.output()}`);
    try {
      const response = await fetch(`http://127.0.0.1:${port}/readyz`);
      if (response.status === 200) return response;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gateway not ready: ${running.output()}`);
}

describe('the gateway process', () => {
  it('starts with no configuration, serves /healthz and /readyz, keeps data in ./.linkgate across restarts, and stops on SIGTERM', async () => {
    const port = await freePort();
    const first = start(port);
    const ready = await waitReady(port, first);
    expect(await ready.json()).toEqual({ status: 'ready', database: 'pglite' });
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'healthy' });

    const dataDir = join(cwd, '.linkgate');
    expect(existsSync(join(dataDir, 'pgdata'))).toBe(true);
    const secrets = readFileSync(join(dataDir, 'secrets.env'), 'utf8');
    const apiKey = /^LINKGATE_API_KEYS=(.+)$/m.exec(secrets)![1]!;
    const encryptionKeys = /^LINKGATE_ENCRYPTION_KEYS=(.+)$/m.exec(secrets)![1]!;
    expect(first.output()).toContain('generated development secrets');
    expect(first.output()).not.toContain(apiKey);

    // A second process on the same data directory refuses to start.
    const second = start(await freePort());
    expect(await second.exited).toBe(1);
    expect(second.output()).toMatch(/is in use by another Linkgate process .*set DATABASE_URL to PostgreSQL/);

    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    expect(first.output()).toContain('"msg":"stopped"');
    expect(readdirSync(dataDir).filter((name) => name.endsWith('.lock'))).toEqual([]);

    // Store a link in the embedded database while the gateway is down…
    const database = await openDatabase({ dataDir: join(dataDir, 'pgdata') });
    const [kid, key] = encryptionKeys.split(':') as [string, string];
    await createLinkStore(database.db, createKeyring([{ kid, key: Buffer.from(key, 'base64') }])).store(
      { tenant: 'default', userId: '80351110224678912', provider: 'demo' },
      { id: 'ext-1', name: 'Nelly' },
      { accessToken: 'x' },
      { allowShared: false, now: new Date() },
    );
    await database.close();

    // …and the restarted gateway, with the same generated secrets, serves it.
    const third = start(port);
    await waitReady(port, third);
    expect(third.output()).not.toContain('generated development secrets');
    const links = await fetch(`http://127.0.0.1:${port}/api/v1/users/80351110224678912/links`, { headers: { authorization: `Bearer ${apiKey}` } });
    expect(links.status).toBe(200);
    expect(await links.json()).toMatchObject({ links: [{ provider: 'demo', externalId: 'ext-1', externalName: 'Nelly' }] });
    third.child.kill('SIGTERM');
    expect(await third.exited).toBe(0);
  }, 120_000);

  it('stops with one line naming a bad variable', async () => {
    const child = spawn(TSX, [join(ROOT, 'src/server.ts')], {
      cwd,
      env: { PATH: process.env.PATH, OAUTH_STATE_TTL_SECONDS: 'soon' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(1);
    expect(stderr.trim()).toBe('linkgate: configuration error: OAUTH_STATE_TTL_SECONDS: must be a whole number');
  });

  it('stops with one line, and no stack trace, when its port is taken', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const running = start(port);
      expect(await running.exited).toBe(1);
      expect(running.output()).toContain(`linkgate: failed to start: 127.0.0.1:${port} is already in use`);
      expect(running.output()).not.toMatch(/\n\s+at /);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });
});
