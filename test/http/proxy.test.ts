/**
 * The provider API proxy (issue #23): a bot calls Discord's and AniList's own
 * APIs through the gateway with its user's link, for the calls the operator
 * allows and nothing else; the token is refreshed once for many callers,
 * a refused token is retried once and then needs reauthentication, and no
 * token ever reaches the bot or the logs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { createLinkStore } from '../../src/core/links.ts';
import { startFakeAniList, type FakeAniList } from '../fakes/anilist.ts';
import { startFakeDiscord, type FakeDiscord } from '../fakes/discord.ts';
import { linkAtFake, linkAtFakeDiscord } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, reroute, type TestGateway } from '../helpers/gateway.ts';

const BASE = 'http://127.0.0.1:8000';
const ENV = {
  DISCORD_CLIENT_ID: '123456789012345678',
  DISCORD_CLIENT_SECRET: 'discord-client-secret-0123456789',
  DISCORD_SCOPES: 'identify guilds',
  DISCORD_PROXY_ALLOW: 'GET users/@me',
  ANILIST_CLIENT_ID: '12345',
  ANILIST_CLIENT_SECRET: 'anilist-client-secret-0123456789',
  ANILIST_PROXY_ALLOW: 'POST /',
};

let database: Database;
let discord: FakeDiscord;
let anilist: FakeAniList;
let gateway: TestGateway;
let clock = Date.now();

beforeAll(async () => {
  database = await createTestDatabase();
  discord = await startFakeDiscord({ clientId: ENV.DISCORD_CLIENT_ID, clientSecret: ENV.DISCORD_CLIENT_SECRET, redirectUris: [`${BASE}/oauth/discord/callback`] });
  anilist = await startFakeAniList({ clientId: ENV.ANILIST_CLIENT_ID, clientSecret: ENV.ANILIST_CLIENT_SECRET, redirectUris: [`${BASE}/oauth/anilist/callback`] });
  for (const id of ['80351110224678920', '80351110224678921', '80351110224678922', '80351110224678923']) discord.users.set(id, { id, username: `user${id.slice(-2)}`, global_name: null });
  anilist.users.set(7001, { id: 7001, name: 'Proxied' });
  gateway = await createTestGateway(database, {
    env: ENV,
    fetch: reroute({ 'https://discord.com': discord.origin, 'https://anilist.co': anilist.origin, 'https://graphql.anilist.co': anilist.graphqlUrl }),
    now: () => clock,
  });
});
afterAll(async () => {
  await discord?.close();
  await anilist?.close();
  await database?.close();
});

const linkDiscord = (userId: string, discordId: string) => linkAtFakeDiscord(gateway.app, discord, userId, discordId, { now: clock });

const proxy = (userId: string, provider: string, path: string, init: RequestInit = {}) => gateway.api(`/users/${userId}/links/${provider}/proxy/${path}`, init);
const credentialsOf = async (userId: string, provider: string) => {
  const store = createLinkStore(database.db, gateway.keyring);
  return store.openCredentials((await store.get({ tenant: 'default', userId, provider }))!);
};

describe('the provider API proxy', () => {
  it("answers Discord's own answer for an allowed call, with the user's token and without showing it", async () => {
    await linkDiscord('proxy-discord', '80351110224678920');
    const answer = await proxy('proxy-discord', 'discord', 'users/@me/guilds');
    expect(answer.status).toBe(200);
    expect(answer.headers.get('content-type')).toBe('application/json');
    expect(answer.headers.get('content-security-policy')).toContain('sandbox');
    const guilds = (await answer.json()) as Array<{ name: string; owner: boolean }>;
    expect(guilds.map((g) => g.name)).toEqual(['Annie Mei Support', "user20's server"]);
    const { accessToken } = await credentialsOf('proxy-discord', 'discord');
    expect(JSON.stringify(guilds)).not.toContain(accessToken);
    expect(gateway.logs.join('\n')).not.toContain(accessToken!);
  });

  it("passes an AniList GraphQL query to its API root and the answer back", async () => {
    await linkAtFake(gateway.app, { id: 'anilist', fake: anilist }, 'proxy-anilist', 7001, { now: clock });
    const answer = await proxy('proxy-anilist', 'anilist', '', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'query { Viewer { id name } }' }),
    });
    expect(answer.status).toBe(200);
    expect(await answer.json()).toEqual({ data: { Viewer: { id: 7001, name: 'Proxied' } } });
  });

  it('refuses what the allowlist does not list, before any upstream request (deny by default)', async () => {
    const before = { ...discord.counts };
    for (const [path, init] of [
      ['guilds/613425648685547541', {}],
      ['users/@meow', {}],
      ['users/@me/guilds', { method: 'DELETE' }],
      ['users/@me', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }],
    ] as const) {
      const refused = await proxy('proxy-discord', 'discord', path, init);
      expect(refused.status, path).toBe(403);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('proxy_not_allowed');
    }
    // Paths that could step out of the allowed prefix are refused outright (400); encoded dot
    // segments are resolved by URL parsing before the route sees them, and land outside it (403).
    for (const path of ['users/@me/a%2Fb', 'users//@me', 'users/@me/%5C', 'users/@me/%00']) {
      expect((await proxy('proxy-discord', 'discord', path)).status, path).toBe(400);
    }
    expect((await proxy('proxy-discord', 'discord', 'users/@me/%2e%2e/%2e%2e/guilds/1')).status).toBe(403);
    expect(discord.counts).toEqual(before);
    // A provider the operator allowed nothing for proxies nothing.
    const unconfigured = await createTestGateway(database, { env: { ...ENV, DISCORD_PROXY_ALLOW: '' }, fetch: reroute({ 'https://discord.com': discord.origin }) });
    expect((await unconfigured.api('/users/proxy-discord/links/discord/proxy/users/@me')).status).toBe(403);
    expect(discord.counts).toEqual(before);
  });

  it('refreshes an expired token once for 20 calls at once', async () => {
    await linkDiscord('proxy-expiring', '80351110224678921');
    const { expiresAt } = await credentialsOf('proxy-expiring', 'discord');
    clock = expiresAt! + 1_000;
    const refreshes = discord.counts.tokenByGrant.refresh_token ?? 0;
    const answers = await Promise.all(Array.from({ length: 20 }, () => proxy('proxy-expiring', 'discord', 'users/@me/guilds')));
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    expect(discord.counts.tokenByGrant.refresh_token).toBe(refreshes + 1);
    clock = Date.now();
  });

  it('retries a refused token once after a refresh, then marks the link needs_reauth and answers with a link URL', async () => {
    await linkDiscord('proxy-refused', '80351110224678922');
    // Refused once: refreshed and retried, the bot sees the answer.
    discord.failNext('guilds', 'http401');
    const refreshes = discord.counts.tokenByGrant.refresh_token ?? 0;
    expect((await proxy('proxy-refused', 'discord', 'users/@me/guilds')).status).toBe(200);
    expect(discord.counts.tokenByGrant.refresh_token).toBe(refreshes + 1);
    // Refused twice: the link needs the user again.
    discord.failNext('guilds', 'http401', 2);
    const answer = await proxy('proxy-refused', 'discord', 'users/@me/guilds');
    expect(answer.status).toBe(409);
    const body = (await answer.json()) as { error: { code: string }; linkUrl: string };
    expect(body.error.code).toBe('needs_reauth');
    expect(body.linkUrl).toMatch(/\/oauth\/discord\/start\?context=/);
    expect(((await (await gateway.api('/users/proxy-refused/links/discord')).json()) as { status: string }).status).toBe('needs_reauth');
  });

  it('passes an upstream error with its status, and Retry-After on', async () => {
    await linkDiscord('proxy-busy', '80351110224678923');
    discord.failNext('guilds', 'http500');
    const failed = await proxy('proxy-busy', 'discord', 'users/@me/guilds');
    expect(failed.status).toBe(500);
    expect(await failed.json()).toEqual({ message: '500: Internal Server Error', code: 0 });
    discord.failNext('guilds', 'http429');
    const limited = await proxy('proxy-busy', 'discord', 'users/@me/guilds');
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('2');
    expect(((await limited.json()) as { retry_after: number }).retry_after).toBe(1.5);
  });

  it('answers not_linked with a link URL for a user without a link', async () => {
    const answer = await proxy('proxy-nobody', 'discord', 'users/@me/guilds');
    expect(answer.status).toBe(404);
    expect(((await answer.json()) as { linkUrl: string }).linkUrl).toMatch(/\/oauth\/discord\/start/);
  });
});
