import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createKeyring } from '../src/core/crypto.ts';
import { createLinkStore } from '../src/core/links.ts';
import { openDatabase } from '../src/db/client.ts';
import { scriptArguments, startGatewayProcess } from './helpers/process.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** `npm start`'s node arguments: one process, tsx as a loader in it. */
const START = scriptArguments('start');
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
  const child = spawn(process.execPath, START, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
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
    // Development: a banner saying where everything is and what each provider still needs, and readable log lines.
    const banner = first.output().slice(first.output().indexOf('  Linkgate is running (development)'));
    expect(banner).toContain(`  Gateway        http://127.0.0.1:${port}\n`);
    expect(banner).toContain(`  API reference  http://127.0.0.1:${port}/docs\n`);
    expect(banner).toContain(`  API key        LINKGATE_API_KEYS in ${join(dataDir, 'secrets.env')}\n`);
    expect(banner).toContain(`  Database       embedded (PGlite) in ${join(dataDir, 'pgdata')}\n`);
    expect(banner).toMatch(/^ {4}anilist +AniList +not configured: set ANILIST_CLIENT_ID, ANILIST_CLIENT_SECRET$/m);
    expect(banner).toMatch(/^ {4}atproto +Bluesky +ready$/m);
    expect(banner).toMatch(/^ {4}jellyfin +Jellyfin +not configured: set either JELLYFIN_SERVER_URL, or JELLYFIN_ALLOW_USER_SERVER=true$/m);
    expect(first.output()).toMatch(/^\[\d{2}:\d{2}:\d{2}\.\d{3}\] INFO: linkgate listening \{"url":/m);
    expect(first.output()).not.toMatch(/^\{"level"/m);

    // A second process on the same data directory refuses to start.
    const second = start(await freePort());
    expect(await second.exited).toBe(1);
    expect(second.output()).toMatch(/is in use by another Linkgate process .*set DATABASE_URL to PostgreSQL/);

    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    expect(first.output()).toMatch(/\] INFO: stopped\n$/);
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
    expect(third.output()).toContain(`  API key        LINKGATE_API_KEYS in ${join(dataDir, 'secrets.env')}\n`);
    const links = await fetch(`http://127.0.0.1:${port}/api/v1/users/80351110224678912/links`, { headers: { authorization: `Bearer ${apiKey}` } });
    expect(links.status).toBe(200);
    expect(await links.json()).toMatchObject({ links: [{ provider: 'demo', externalId: 'ext-1', externalName: 'Nelly' }] });
    third.child.kill('SIGTERM');
    expect(await third.exited).toBe(0);
  }, 120_000);

  it('stops with one line naming a bad variable', async () => {
    const child = spawn(process.execPath, START, {
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

  it('in production, stops listing every missing or bad variable at once', async () => {
    const child = spawn(process.execPath, START, {
      cwd,
      env: {
        PATH: process.env.PATH,
        NODE_ENV: 'production',
        PORT: 'eighty',
        LINKGATE_WEBHOOK_URL: 'https://bot.example/hooks',
        // Providers' own variables, checked by their modules.
        ANILIST_CLIENT_ID: 'my-anilist-app',
        ANILIST_CLIENT_SECRET: 'anilist-secret',
        DISCORD_CLIENT_ID: 'my-discord-app',
        DISCORD_CLIENT_SECRET: 'discord-secret',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    expect(await new Promise((resolve) => child.on('exit', resolve))).toBe(1);
    // Provider modules are named relative to the working directory.
    const shown = (file: string) => relative(cwd, join(ROOT, file));
    expect(stderr).toBe(
      [
        'linkgate: configuration error: 9 problems:',
        '  PORT: must be a whole number',
        '  OAUTH_CONTEXT_SIGNING_SECRET: is required in production',
        '  USERID_HASH_SALT: is required in production',
        '  LINKGATE_API_KEYS: is required in production',
        '  LINKGATE_ENCRYPTION_KEYS: is required in production',
        '  PUBLIC_BASE_URL: required in production (the https URL browsers reach the gateway at)',
        '  LINKGATE_WEBHOOK_SECRET: required with LINKGATE_WEBHOOK_URL (receivers verify every event with it)',
        `  ANILIST_CLIENT_ID: must be the numeric client id AniList shows (provider "anilist", ${shown('providers/anilist.ts')})`,
        `  DISCORD_CLIENT_ID: must be the application id (a snowflake) (provider "discord", ${shown('providers/discord.ts')})`,
        '',
      ].join('\n'),
    );
  });

  it('in production, logs JSON lines and prints no banner', async () => {
    const started = await startGatewayProcess({ NODE_ENV: 'production', PUBLIC_BASE_URL: 'http://127.0.0.1:8000' });
    try {
      started.child.kill('SIGTERM');
      expect(await started.exited).toBe(0);
      const lines = started.output().trim().split('\n');
      const messages = lines.map((line) => (JSON.parse(line) as { msg: string }).msg);
      expect(messages[0]).toBe('linkgate listening');
      expect(messages.slice(-2)).toEqual(['shutting down', 'stopped']);
      expect(started.output()).not.toContain('Linkgate is running');
    } finally {
      await started.cleanup();
    }
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
