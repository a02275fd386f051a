/**
 * The typed client (`linkgate/client`) against a real gateway listening on
 * a socket, on a real database, linking through the test `pin` provider.
 */
import { spawn } from 'node:child_process';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { sql } from '../../src/db/orm.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createLinkgateClient,
  LinkgateClientError,
  linkUrlFor,
  NeedsReauthError,
  NotLinkedError,
  ProviderUnconfiguredError,
  signLinkContext,
  type LinkgateClient,
} from 'linkgate/client';
import type { Database } from '../../src/db/client.ts';
import { listen } from '../e2e/browser.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { API_KEY, createTestGateway, TEST_SECRETS, type TestGateway } from '../helpers/gateway.ts';
import { ROOT } from '../helpers/process.ts';

const FIXTURES = new URL('../fixtures/providers', import.meta.url).pathname;

let database: Database;
let gateway: TestGateway;
let server: { url: string; close(): Promise<void> };
let baseUrl: string;
let client: LinkgateClient;

beforeAll(async () => {
  database = await createTestDatabase();
  gateway = await createTestGateway(database, { providersDir: FIXTURES });
  server = await listen(gateway.app.fetch);
  baseUrl = server.url;
  client = createLinkgateClient({ baseUrl, apiKey: API_KEY, timeoutMs: 5000 });
});
afterAll(async () => {
  await server?.close();
  await database?.close();
});

/** What the user does with a link URL: sign in to Pin, approve the code. */
async function completeLink(url: string, username: string): Promise<void> {
  const browser = new TestBrowser((path, init) => fetch(new URL(path, baseUrl), { ...init, redirect: 'manual' }));
  const start = await browser.openLink(new URL(url).pathname + new URL(url).search);
  expect(start.status).toBe(200);
  const state = /name="state" value="([^"]+)"/.exec(await start.text())![1]!;
  const wait = await browser.post('/oauth/pin/callback', { state, username, password: 'correct horse' });
  expect(wait.status).toBe(200);
  for (let i = 0; i < 2; i++) await browser.get(`/oauth/pin/poll?state=${encodeURIComponent(state)}`);
}

describe('linkgate/client', () => {
  it('lists providers, and a user who has not linked gets a NotLinkedError carrying a link URL', async () => {
    expect(await client.listProviders()).toContainEqual({ id: 'pin', displayName: 'Pin', configured: true });
    expect(await client.getLink('discord:1', 'pin')).toBeNull();
    const error = await client.requireLink('discord:1', 'pin').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NotLinkedError);
    expect(error).toMatchObject({ code: 'not_linked', status: 404 });
    expect((error as NotLinkedError).linkUrl).toMatch(/^http:\/\/127\.0\.0\.1:8000\/oauth\/pin\/start\?context=/);
  });

  it('waits for a link the user completes meanwhile, then reads, tokens, lists and unlinks it', async () => {
    const { url, expiresAt } = await client.createLinkUrl('discord:2', 'pin');
    expect(Date.parse(expiresAt)).toBeGreaterThan(Date.now());
    const waiting = client.waitForLink('discord:2', 'pin', { timeoutSeconds: 20 });
    await completeLink(url, 'ada');
    const linked = await waiting;
    expect(linked).toMatchObject({ userId: 'discord:2', provider: 'pin', externalId: 'ada', status: 'active' });

    expect(await client.requireLink('discord:2', 'pin')).toMatchObject({ externalName: 'ada' });
    expect(await client.getToken('discord:2', 'pin')).toMatchObject({ accessToken: 'pin-access-token', tokenType: 'Bearer' });
    expect((await client.listLinks('discord:2')).map((l) => l.provider)).toEqual(['pin']);

    expect(await client.unlink('discord:2', 'pin')).toBe(true);
    expect(await client.unlink('discord:2', 'pin')).toBe(false);
    expect(await client.getLink('discord:2', 'pin')).toBeNull();
  });

  it('a provider the gateway has not configured is a ProviderUnconfiguredError naming what it needs, never a null link URL', async () => {
    const standard = await createTestGateway(database);
    const unconfigured = await listen(standard.app.fetch);
    try {
      const bot = createLinkgateClient({ baseUrl: unconfigured.url, apiKey: API_KEY });
      for (const call of [() => bot.requireLink('discord:9', 'anilist'), () => bot.getLink('discord:9', 'anilist'), () => bot.createLinkUrl('discord:9', 'anilist')]) {
        const error = await call().catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ProviderUnconfiguredError);
        expect(error).toMatchObject({ name: 'ProviderUnconfiguredError', code: 'provider_unconfigured', status: 503 });
        expect((error as Error).message).toBe('AniList is not configured (missing ANILIST_CLIENT_ID, ANILIST_CLIENT_SECRET)');
      }
    } finally {
      await unconfigured.close();
    }
  });

  it('waitForLink answers null when nobody links in time', async () => {
    expect(await client.waitForLink('discord:3', 'pin', { timeoutSeconds: 1 })).toBeNull();
  });

  it('requireLink throws NeedsReauthError with a fresh link URL for a link that needs reauth', async () => {
    const { url } = await client.createLinkUrl('discord:4', 'pin');
    await completeLink(url, 'grace');
    await database.db.execute(sql`update links set status = 'needs_reauth' where user_id = 'discord:4'`);
    const error = await client.requireLink('discord:4', 'pin').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NeedsReauthError);
    expect((error as NeedsReauthError).linkUrl).toContain('/oauth/pin/start?context=');
  });

  it('signs contexts locally that the gateway accepts, and the gateway refuses a wrong secret', async () => {
    const good = await signLinkContext({ secret: TEST_SECRETS.OAUTH_CONTEXT_SIGNING_SECRET, userId: 'discord:5', provider: 'pin' });
    const browser = new TestBrowser((path, init) => fetch(new URL(path, baseUrl), { ...init, redirect: 'manual' }));
    const page = await browser.openLink(new URL(linkUrlFor(baseUrl, 'pin', good)).pathname + new URL(linkUrlFor(baseUrl, 'pin', good)).search);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('Sign in to Pin');
    const bad = await signLinkContext({ secret: 'x'.repeat(40), userId: 'discord:5', provider: 'pin' });
    expect((await fetch(linkUrlFor(baseUrl, 'pin', bad))).status).toBe(400);
  });

  it('throws typed errors: a wrong key, an unreachable gateway, a gateway that does not answer', async () => {
    const wrongKey = createLinkgateClient({ baseUrl, apiKey: 'lg_wrong_key_0123456789abcdefghijklmnop' });
    await expect(wrongKey.listProviders()).rejects.toMatchObject({ name: 'LinkgateClientError', code: 'unauthorized', status: 401 });
    await expect(client.createLinkUrl('discord:6', 'nope')).rejects.toMatchObject({ code: 'unknown_provider', status: 404 });

    // A port nothing listens on.
    const closed: NetServer = createNetServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const unreachable = createLinkgateClient({ baseUrl: `http://127.0.0.1:${port}`, apiKey: API_KEY });
    await expect(unreachable.listProviders()).rejects.toMatchObject({ code: 'network_error' });

    // A server that accepts and never answers.
    const silent = createNetServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const slow = createLinkgateClient({ baseUrl: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`, apiKey: API_KEY, timeoutMs: 300 });
      const error = await slow.listProviders().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LinkgateClientError);
      expect(error).toMatchObject({ code: 'timeout' });
    } finally {
      silent.close();
    }
  });
});

describe('the example bot commands (examples/bot-commands.ts)', () => {
  it('/whoami asks to link first, /register gives a link and confirms once the user finishes, then /whoami knows them', async () => {
    const { botCommands } = await import('../../examples/bot-commands.ts');
    const bot = botCommands(client, 'pin');
    expect(await bot.whoami('discord:42')).toMatch(/^Please link your account first: http:\/\/127\.0\.0\.1:8000\/oauth\/pin\/start\?context=/);
    const reply = await bot.register('discord:42');
    const url = /(http\S+)$/.exec(reply)![1]!;
    const confirmation = bot.registered('discord:42', 20);
    await completeLink(url, 'lovelace');
    expect(await confirmation).toBe('Linked! You are lovelace.');
    expect(await bot.whoami('discord:42')).toMatch(/^You are lovelace \(linked \d{4}-\d{2}-\d{2}\)\.$/);
    expect(await bot.register('discord:42')).toBe('You are already linked as lovelace.');
  });
});

/** `node examples/bot-commands.ts …` as the README runs it, from a terminal. */
function runExample(args: string[], gatewayUrl: string, onOutput?: (stdout: string) => void) {
  const child = spawn(process.execPath, ['examples/bot-commands.ts', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, LINKGATE_URL: gatewayUrl, LINKGATE_API_KEY: API_KEY },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
    onOutput?.(stdout);
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

describe('the example bot commands run from a terminal', () => {
  it('on a gateway with the default providers and no variables, says AniList is not configured and what it needs, for /whoami and /register', async () => {
    const standard = await listen((await createTestGateway(database)).app.fetch);
    try {
      const expected = 'Linking is not available yet: AniList is not configured (missing ANILIST_CLIENT_ID, ANILIST_CLIENT_SECRET).\n';
      for (const command of ['whoami', 'register']) {
        expect(await runExample([command, '80351110224678912', 'anilist'], standard.url)).toEqual({ code: 0, stdout: expected, stderr: '' });
      }
    } finally {
      await standard.close();
    }
  });

  it('register prints a link and waits for the user to finish it; whoami then names them', { timeout: 60_000 }, async () => {
    let opened: Promise<void> | undefined;
    const registered = await runExample(['register', 'discord:77', 'pin'], baseUrl, (stdout) => {
      const url = /(http:\/\/\S+\/oauth\/pin\/start\?context=\S+)/.exec(stdout)?.[1];
      if (url && !opened) opened = completeLink(url, 'hopper');
    });
    await opened;
    expect(registered.code).toBe(0);
    expect(registered.stdout).toMatch(/^Open this link to connect your account \(it works once, for a few minutes\): http\S+\nLinked! You are hopper\.\n$/);
    const whoami = await runExample(['whoami', 'discord:77', 'pin'], baseUrl);
    expect(whoami).toMatchObject({ code: 0, stderr: '' });
    expect(whoami.stdout).toMatch(/^You are hopper \(linked \d{4}-\d{2}-\d{2}\)\.\n$/);
  });
});
